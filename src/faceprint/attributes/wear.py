"""Eyeglasses, Sunglasses, Beard and Mustache: small linear heads on SFace's last feature map.

SFace (the face embedder the engine already pins) is run on the usual 112 x 112 ArcFace-aligned
crop, but read one layer before its embedding: ``conv_14_relu``, 1024 channels on a 7 x 7 grid
(16 px cells). The map is averaged over a few face regions (eyes, nose bridge, upper lip, chin,
cheeks) and each attribute is one logistic head on those averages, trained on the project's own
LFW labels (``benchmarks/labels``; ``benchmarks/train_wear.py`` writes ``wear_heads.npz``, and
``benchmarks/attr_wear.py`` measures it on held-out people). The heads are calibrated: the
probability is what the held-out faces showed, shifted to how common each attribute is in the
random part of the labels. (The heads were trained on each crop and its mirror image; scoring
the mirror too at run time was measured and did not help, so one SFace pass a face is all.)

A head for FaceOccluded (hands, microphones, dark glasses in front of the face) comes with the
same features: :meth:`WearReader.scores` gives it, for whoever decides FaceOccluded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from faceprint.attributes import as_bool
from faceprint.imaging import DecodedImage
from faceprint.models import catalog
from faceprint.models.embedders import align_112
from faceprint.models.onnx_edit import with_output
from faceprint.models.store import ModelStore
from faceprint.types import BoolAttribute

FEATURE_LAYER = "conv_14_relu"
"""SFace's last convolution (1024 x 7 x 7), before the flattening into the 128-d embedding."""

REGIONS = {  # rows, columns of the 7 x 7 map (cell = 16 px of the 112 px ArcFace crop)
    "eyes": (slice(2, 4), slice(1, 6)),
    "bridge": (slice(3, 4), slice(3, 4)),
    "upper_lip": (slice(4, 6), slice(2, 5)),
    "chin": (slice(6, 7), slice(1, 6)),
    "cheek_left": (slice(4, 6), slice(0, 2)),
    "cheek_right": (slice(4, 6), slice(5, 7)),
}
HEADS = ("eyeglasses", "sunglasses", "beard", "mustache", "face_occluded")
"""What ``wear_heads.npz`` scores, in its rows' order."""
WEAR = HEADS[:4]
HEADS_FILE = "wear_heads.npz"
SMALL_FACE_KNOTS = ((21.0, 40.0), (0.89, 1.0))
"""Box width (px) -> how much of a facial-hair probability's distance from 0.5 is kept: measured on
the labels downscaled (benchmarks/attr_wear.py protocol), beard and mustache at 21 px boxes were
right 90-92% of the time but said 95%; at 40 px confidence and accuracy agreed within 2 points.
Eyewear needed no such correction (97.0% right, 96.9 said, at 21 px)."""


class FeatureMaps:
    """SFace read at FEATURE_LAYER and averaged over REGIONS; thread-safe (onnxruntime sessions
    may be run from several threads)."""

    def __init__(self, store: ModelStore, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = with_output(store.path(catalog.SFACE).read_bytes(), FEATURE_LAYER)
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def features(self, image: DecodedImage, lm5: np.ndarray, mirror: bool = False) -> np.ndarray:
        """The region averages for the face at ``lm5`` (of its mirrored crop if asked): one
        float32 vector of len(REGIONS) x 1024."""
        crop = align_112(image.bgr, np.asarray(lm5, np.float32))
        if mirror:
            crop = crop[:, ::-1]
        blob = np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        return pool_regions(self._session.run(None, {self._input: blob})[0][0])


class WearReader:
    """Eyewear and facial hair (and occlusion) of one face; thread-safe."""

    def __init__(self, store: ModelStore, threads: int = 1, heads: Path | None = None) -> None:
        self.maps = FeatureMaps(store, threads)
        self.weights, self.bias = load_heads(heads)

    def scores(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray) -> dict[str, float]:
        """Calibrated probability (0-1) of each head (HEADS)."""
        logits = self.weights @ self.maps.features(image, lm5) + self.bias
        probs = 1 / (1 + np.exp(-np.clip(logits, -30, 30)))
        out = dict(zip(HEADS, (float(p) for p in probs), strict=True))
        out["eyeglasses"] = max(out["eyeglasses"], out["sunglasses"])  # sunglasses are glasses
        keep = float(np.interp(float(box[2]), *SMALL_FACE_KNOTS))
        for name in ("beard", "mustache"):
            out[name] = 0.5 + (out[name] - 0.5) * keep
        return out

    def read(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray, mesh: object | None,
             wanted: frozenset[str]) -> dict[str, BoolAttribute]:
        """Rekognition's Eyeglasses, Sunglasses, Beard and Mustache (those in ``wanted``, by
        request name or field name). ``mesh`` is not used: the heads read SFace's features."""
        names = {w.lower() for w in wanted} & set(WEAR)
        if not names:
            return {}
        probs = self.scores(image, box, lm5)
        return {name: as_bool(probs[name]) for name in WEAR if name in names}


def pool_regions(fmap: np.ndarray) -> np.ndarray:
    """C x 7 x 7 feature map -> the mean over each of REGIONS, concatenated (float32)."""
    return np.concatenate([fmap[:, rows, cols].mean(axis=(1, 2)) for rows, cols in REGIONS.values()]
                          ).astype(np.float32)


def load_heads(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weights len(HEADS) x features, bias len(HEADS)), float32, from the package's heads file."""
    source = path if path is not None else resources.files("faceprint.attributes") / HEADS_FILE
    with source.open("rb") as handle, np.load(handle) as data:
        if tuple(str(h) for h in data["heads"]) != HEADS:
            raise ValueError(f"{HEADS_FILE}: heads {list(data['heads'])}, expected {list(HEADS)}")
        return data["weights"].astype(np.float32), data["bias"].astype(np.float32)
