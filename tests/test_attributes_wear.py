"""Eyeglasses, Sunglasses, Beard and Mustache on LFW faces whose wear is plain to see. None of
these images is in the labels the heads were trained on (benchmarks/labels): they were picked by
eye from further along the labelling order. Real SFace, real detector, the shipped heads."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import lfw_image, models_dir
from faceprint.imaging import DecodedImage
from faceprint.types import BoolAttribute

WEAR = frozenset(("EYEGLASSES", "SUNGLASSES", "BEARD", "MUSTACHE"))

# (person, image number): eyeglasses, sunglasses, beard, mustache
KNOWN = {
    ("Jane_Fonda", 2): (True, True, False, False),      # dark glasses
    ("Walter_Mondale", 4): (True, False, False, False),  # clear glasses, clean-shaven
    ("Jim_Wall", 1): (True, False, False, False),
    ("Norman_Jewison", 2): (True, False, True, True),    # glasses, white beard
    ("John_Petty", 1): (False, False, True, True),       # full beard
    ("Edward_Said", 2): (False, False, True, True),
    ("Vicente_Fernandez", 5): (False, False, False, True),  # mustache only
    ("Michael_Deutsch", 1): (False, False, False, False),
    ("Monica_Bellucci", 1): (False, False, False, False),
    ("Angelina_Jolie", 3): (False, False, False, False),
}


@pytest.fixture(scope="module")
def kit():
    from faceprint.attributes.wear import WearReader
    from faceprint.models import catalog
    from faceprint.models.detector import YuNetDetector
    from faceprint.models.store import ModelStore

    store = ModelStore(models_dir())
    return YuNetDetector(store.path(catalog.YUNET)), WearReader(store)


def face_of(detector, path):
    import cv2

    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    image = DecodedImage(rgb=np.ascontiguousarray(bgr[:, :, ::-1]))
    found = detector.detect(image.bgr)
    assert len(found), f"no face in {path}"
    centres = found.boxes[:, :2] + found.boxes[:, 2:] / 2
    i = int(np.argmin(((centres - [image.width / 2, image.height / 2]) ** 2).sum(1)))
    return image, found.boxes[i], found.landmarks[i]


@pytest.mark.parametrize(("person", "number"), sorted(KNOWN))
def test_eyewear_and_facial_hair_of_known_faces(kit, person, number):
    detector, reader = kit
    worn = reader.read(*face_of(detector, lfw_image(person, number)), None, WEAR)
    assert set(worn) == {"eyeglasses", "sunglasses", "beard", "mustache"}
    got = tuple(worn[k].value for k in ("eyeglasses", "sunglasses", "beard", "mustache"))
    assert got == KNOWN[person, number], worn
    for attribute in worn.values():
        assert isinstance(attribute, BoolAttribute)
        assert 50 <= attribute.confidence <= 100


def test_only_what_is_asked_and_sunglasses_count_as_glasses(kit):
    detector, reader = kit
    face = face_of(detector, lfw_image("Jane_Fonda", 2))
    assert set(reader.read(*face, None, frozenset({"BEARD"}))) == {"beard"}
    assert reader.read(*face, None, frozenset({"SMILE"})) == {}
    probs = reader.scores(*face)
    assert set(probs) == {"eyeglasses", "sunglasses", "beard", "mustache", "face_occluded"}
    assert probs["eyeglasses"] >= probs["sunglasses"] > 0.5
    assert probs["face_occluded"] > 0.5  # dark lenses hide the eyes


def test_clear_faces_are_told_with_high_confidence(kit):
    detector, reader = kit
    worn = reader.read(*face_of(detector, lfw_image("Walter_Mondale", 4)), None, WEAR)
    assert worn["eyeglasses"].confidence > 90
    assert worn["sunglasses"].confidence > 90


def test_feature_layer_is_read_from_sface_itself():
    from faceprint.attributes.wear import FEATURE_LAYER
    from faceprint.models import catalog
    from faceprint.models.onnx_edit import with_output
    from faceprint.models.store import ModelStore

    model = ModelStore(models_dir()).path(catalog.SFACE).read_bytes()
    import onnxruntime as ort

    session = ort.InferenceSession(with_output(model, FEATURE_LAYER), providers=["CPUExecutionProvider"])
    (output,) = session.get_outputs()
    assert output.name == FEATURE_LAYER
    fmap = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 112, 112), np.float32)})[0]
    assert fmap.shape == (1, 1024, 7, 7)
    with pytest.raises(ValueError):
        with_output(b"\x08\x07", FEATURE_LAYER)  # a protobuf with no graph


def test_facial_hair_is_said_less_surely_on_small_faces(kit):
    detector, reader = kit
    image, box, lm5 = face_of(detector, lfw_image("John_Petty", 1))
    assert box[2] > 60
    large = reader.scores(image, box, lm5)
    small = reader.scores(image, np.array([box[0], box[1], 20.0, 20.0]), lm5)
    assert 0.5 < small["beard"] < large["beard"]
    assert 0.5 < small["mustache"] < large["mustache"]
    assert small["eyeglasses"] == large["eyeglasses"]
