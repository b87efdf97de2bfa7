"""faceprint's Rekognition-compatible HTTP server (``faceprint serve``).

Submodules are imported on demand so that importing this package stays cheap:
``auth`` verifies AWS Signature Version 4 against faceprint's access keys,
``s3`` reads ``Image.S3Object`` images from local folders or an S3 endpoint.
"""
