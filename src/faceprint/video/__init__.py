"""Stored video: Rekognition Video's face search, face detection, text and segment jobs.

``service.VideoJobs`` holds the Start/Get operations (``Faceprint.video``); ``store.JobStore`` the
jobs and their results (``HOME/video/jobs.db``); ``runner.VideoRunner`` runs queued jobs in worker
processes (``worker``; one runner per home); ``analysers`` names the analyser of each operation (``faces``,
``text``, ``segments``), run on ``decode``'s frames through a ``context.JobContext``; ``notify``
posts SNS-style completion notifications; ``tables`` writes results as the CLI's tables.

Nothing here is imported by ``faceprint`` itself until a video operation is used."""
