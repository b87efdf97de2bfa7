"""Live camera streams: Rekognition's stream processors (face search on live video).

``service.StreamProcessors`` holds the seven operations (``Faceprint.streams``; ``members`` checks their
request members); ``store.ProcessorStore``
the processors and their recent events (``HOME/streams/processors.db``); ``config.StreamConfig`` maps
Kinesis video stream names to camera URLs and data stream names to sinks (``HOME/streams/*.json``,
0600); ``types`` the statuses, rows and answers. The host process (``host``, supervised by ``runner``)
runs every processor that is wanted: ``sources`` reads cameras, ``live`` follows and matches faces,
``records`` writes Rekognition's Kinesis records and ``sinks`` delivers them.

Nothing here is imported by ``faceprint`` itself until a stream operation is used."""
