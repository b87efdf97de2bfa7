"""The web console (``faceprint serve`` at ``/console``): server-rendered pages over the Faceprint
Python API for people who search, review and audit. See docs/console.md."""
