"""ScrfdDetector with insightface's SCRFD-500M and -2.5G (../shared/data/models-test): faces of
real group photos against their ground-truth boxes, landmarks against YuNet's, files refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, FACES, lfw_pairs, models_dir, same_from_threads
from faceprint.errors import ModelUnavailableError
from faceprint.models import catalog
from faceprint.models.detector import Detections, YuNetDetector
from faceprint.models.onnx_edit import encode_varint, field, spans
from faceprint.models.scrfd import ScrfdDetector
from faceprint.models.store import ModelStore
from groundtruth import dlib_boxes, matched, wider_boxes

MODELS = DATA / "models-test"
GROUPS = FACES / "groups"
KPS_OUTPUTS = {"449", "474", "499"}
"""det_500m.onnx's keypoint outputs (strides 8, 16, 32)."""


@pytest.fixture(scope="module")
def small() -> ScrfdDetector:
    return ScrfdDetector(MODELS / "det_500m.onnx", threads=1)


@pytest.fixture(scope="module")
def medium() -> ScrfdDetector:
    return ScrfdDetector(MODELS / "det_2.5g.onnx", threads=1)


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    store = ModelStore(models_dir())
    store.pull([catalog.YUNET])
    return YuNetDetector(store.path(catalog.YUNET))


def recall(detect, folder: Path, truth: dict[str, np.ndarray]) -> float:
    hits = [matched(boxes, detect(cv2.imread(str(folder / name))).boxes) for name, boxes in truth.items()]
    return float(np.concatenate(hits).mean())


def test_finds_the_faces_of_group_photos(small) -> None:
    folder = GROUPS / "dlib_faces"
    truth = dlib_boxes(folder / "training.xml") | dlib_boxes(folder / "testing.xml")
    # measured: 43 of 43 (YuNet 42)
    assert recall(small.detect, folder, truth) >= 0.95


def test_crowds_at_own_resolution_beat_the_letterbox(small, medium) -> None:
    folder = GROUPS / "wider_val_samples"
    truth = wider_boxes(folder / "wider_val_gt_boxes.json")
    # measured at score 0.5: 2.5G 0.802 (YuNet 0.854); 500M 0.741 own, 0.427 at 640 x 640
    assert recall(medium.detect, folder, truth) >= 0.78
    boxed = ScrfdDetector(MODELS / "det_500m.onnx", max_side=640, coarse_side=640, threads=1)
    own, letterbox = recall(small.detect, folder, truth), recall(boxed.detect, folder, truth)
    assert own >= 0.70
    assert own >= letterbox + 0.2


def test_landmarks_are_near_yunets_in_yunets_order(small, yunet) -> None:
    paths = sorted({a for a, _, _ in lfw_pairs("DevTest")[::40]})
    spread = []
    for path in paths:
        bgr = cv2.imread(str(path))
        mine, theirs = central(small.detect(bgr)), central(yunet.detect(bgr))
        eyes = float(np.linalg.norm(theirs[1] - theirs[0]))
        spread.append(float(np.linalg.norm(mine - theirs, axis=1).max()) / eyes)
        left_eye, right_eye, nose, mouth_left, mouth_right = mine
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # as seen
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # measured on 300 DevTest pairs' faces: median 0.14 of the eye distance, 99th percentile 0.33
    assert len(spread) >= 20
    assert np.median(spread) <= 0.2
    assert max(spread) <= 0.5


def central(found: Detections) -> np.ndarray:
    """Landmarks of the face nearest the centre of a 250 x 250 LFW picture."""
    assert len(found)
    centres = found.boxes[:, :2] + found.boxes[:, 2:] / 2
    return found.landmarks[int(np.argmin(((centres - 125) ** 2).sum(axis=1)))]


def test_a_face_filling_a_large_picture_is_found(small) -> None:
    face = cv2.imread(str(FACES / "lfw-dev" / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"))[50:200, 50:200]
    for side in (150, 1200):  # 1200: beyond SCRFD's largest anchors, found by the coarse pass
        found = small.detect(cv2.resize(face, (side, side)))
        assert len(found) == 1
        assert 0.5 <= found.boxes[0, 2] / side <= 0.8
        assert (found.landmarks[0] > 0).all() and (found.landmarks[0] < side).all()


@pytest.mark.parametrize("shape", [(480, 640, 3), (5, 5, 3), (40, 3000, 3), (3000, 33, 3), (0, 10, 3)])
def test_blank_tiny_and_strip_pictures_have_no_faces(small, shape) -> None:
    found = small.detect(np.full(shape, 200, np.uint8))
    assert len(found) == 0 and found.boxes.shape == (0, 4) and found.landmarks.shape == (0, 5, 2)


def test_threads_share_one_detector(small) -> None:
    pictures = [cv2.imread(str(p)) for p in sorted((GROUPS / "dlib_faces").glob("2008_00*.jpg"))[:3]]
    same_from_threads(lambda: [small.detect(p).boxes for p in pictures], atol=1e-3)


def test_outputs_are_found_by_shape_not_order(small, tmp_path) -> None:
    model = (MODELS / "det_500m.onnx").read_bytes()
    shuffled = tmp_path / "shuffled.onnx"
    shuffled.write_bytes(edit_outputs(model, lambda outputs: outputs[::-1]))
    picture = cv2.imread(str(GROUPS / "dlib_faces" / "2008_002079.jpg"))
    expected = small.detect(picture)
    found = ScrfdDetector(shuffled, threads=1).detect(picture)
    assert len(found) == len(expected) >= 5
    np.testing.assert_allclose(found.landmarks, expected.landmarks, atol=1e-3)


def test_files_that_are_not_scrfd_detectors_are_refused(tmp_path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 64)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    no_kps = tmp_path / "no_kps.onnx"
    no_kps.write_bytes(edit_outputs((MODELS / "det_500m.onnx").read_bytes(),
                                    lambda outputs: [o for o in outputs if output_name(o) not in KPS_OUTPUTS]))
    cases = {garbage: "not a loadable ONNX model", empty: "not a loadable ONNX model",
             tmp_path / "missing.onnx": "not a loadable ONNX model",
             MODELS / "faceplugin_fr_feature.onnx": "not an SCRFD detector",
             no_kps: "not an SCRFD detector with keypoints"}
    for path, message in cases.items():
        with pytest.raises(ModelUnavailableError, match=message) as caught:
            ScrfdDetector(path)
        assert path.name in caught.value.message


def test_settings_out_of_range_are_refused() -> None:
    for settings in ({"score_threshold": 1.5}, {"nms_threshold": 0}, {"max_side": 16},
                     {"coarse_side": 4000}):
        with pytest.raises(ValueError, match="SCRFD"):
            ScrfdDetector(MODELS / "det_500m.onnx", **settings)


def test_a_fixed_input_size_export_is_refused_clearly(tmp_path) -> None:
    fixed = tmp_path / "fixed.onnx"
    fixed.write_bytes(edit(model_bytes(), 7, lambda graph: edit(graph, 11, fix_shape, first=True)))
    with pytest.raises(ModelUnavailableError, match="faceprint can run: its input is fixed at 640 x 640"):
        ScrfdDetector(fixed)


def model_bytes() -> bytes:
    return (MODELS / "det_500m.onnx").read_bytes()


def fix_shape(value_info: bytes) -> bytes:
    """A graph input (ValueInfoProto) with height and width made 640: type 2, tensor_type 1,
    shape 2, dim 1 (dim_value 1)."""
    def dims(shape: bytes) -> bytes:
        parts = [(n, w, shape[a:b]) for n, w, a, b in spans(shape, 0, len(shape))]
        sized = [(n, w, field(1, 0, encode_varint(640)) if n == 1 and k >= 2 else p)
                 for k, (n, w, p) in enumerate(parts)]
        return b"".join(field(n, w, p) for n, w, p in sized)
    return edit(value_info, 2, lambda kind: edit(kind, 1, lambda tensor: edit(tensor, 2, dims)))


def edit(message: bytes, number: int, change, first: bool = False) -> bytes:
    """Protobuf ``message`` with the payload of its length-delimited field ``number`` (every one,
    or the first only) passed through ``change``."""
    out, done = bytearray(), False
    for n, wire, a, b in spans(message, 0, len(message)):
        payload = message[a:b]
        if n == number and wire == 2 and not done:
            payload, done = change(payload), first
        out += field(n, wire, payload)
    return bytes(out)


def edit_outputs(model: bytes, change) -> bytes:
    """ONNX ``model`` with its graph's output list (ValueInfoProto fields) passed through ``change``."""
    out = bytearray()
    for number, wire, a, b in spans(model, 0, len(model)):
        payload = model[a:b]
        if number == 7 and wire == 2:
            parts = [(n, w, payload[x - a:y - a]) for n, w, x, y in spans(model, a, b)]
            outputs = change([p for p in parts if p[0] == 12])
            payload = b"".join(field(n, w, p) for n, w, p in [*(p for p in parts if p[0] != 12), *outputs])
        out += field(number, wire, payload)
    return bytes(out)


def output_name(output: tuple[int, int, bytes]) -> str:
    value = output[2]
    return next(value[x:y].decode() for n, _, x, y in spans(value, 0, len(value)) if n == 1)
