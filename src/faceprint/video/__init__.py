"""Stored video: Rekognition Video's face search, face detection, text and segment jobs.

Nothing here is imported by ``faceprint`` itself until a video operation is used."""
