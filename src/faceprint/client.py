"""boto3 helpers for a faceprint server: a client of faceprint's own operations, and the case
reference and purpose that the audit record keeps.

``faceprint_client(endpoint_url=..., ...)`` is ``boto3.client("faceprint", ...)`` with the model
shipped in this package (``faceprint/data``) on botocore's data path. By hand, that is::

    session = boto3.Session()
    session._loader.search_paths.insert(0, faceprint.server.model.DATA_PATH)   # or AWS_DATA_PATH=...
    client = session.client("faceprint", endpoint_url=...)

``with_case(client, "CASE-2026-0042", purpose="theft inquiry")`` makes every later request of
``client`` (a Rekognition or a faceprint client) carry ``X-Faceprint-Case`` and
``X-Faceprint-Purpose``, percent-encoded UTF-8, added by a ``before-sign`` hook so that the
signature covers them (the server refuses them unsigned).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

CASE_HEADER = "X-Faceprint-Case"
PURPOSE_HEADER = "X-Faceprint-Purpose"
HOOK_ID = "faceprint-case-and-purpose"


def faceprint_client(*, session: Any = None, **kwargs: Any) -> Any:
    """``boto3.client("faceprint", **kwargs)`` (from ``session``, a ``boto3.Session``, if given), its
    model read from this package."""
    import boto3

    from faceprint.server.model import DATA_PATH

    session = session or boto3.Session()
    loader = session._session.get_component("data_loader")
    if str(DATA_PATH) not in loader.search_paths:
        loader.search_paths.insert(0, str(DATA_PATH))
    return session.client("faceprint", **kwargs)


class _Declared:
    """The before-sign hook: sets the two headers on each request (each retry included)."""

    def __init__(self, case: str | None, purpose: str | None) -> None:
        self.headers = {name: quote(value, safe="") for name, value in ((CASE_HEADER, case),
                                                                          (PURPOSE_HEADER, purpose))
                        if value is not None}

    def __call__(self, request: Any, **kwargs: Any) -> None:
        for name, value in self.headers.items():
            del request.headers[name]  # never twice, if the request is signed again
            request.headers[name] = value


def with_case(client: Any, case: str | None, purpose: str | None = None) -> Any:
    """``client``, whose requests from now on declare ``case`` (and ``purpose``, overriding the key's)
    in signed headers; ``with_case(client, None)`` stops. Returns the client."""
    events = client.meta.events
    events.unregister("before-sign.*.*", unique_id=HOOK_ID)
    if case is not None or purpose is not None:
        events.register("before-sign.*.*", _Declared(case, purpose), unique_id=HOOK_ID)
    return client
