"""Search: a probe against a collection, its candidates beside it, and sending them to review.

A search needs a purpose and a case reference (both go into the audit entry) and a threshold,
shown with the false-match rate it stands for. The result shows the probe (re-encoded, the
searched face framed), each candidate's similarity and the rate at that similarity, and the
notice that a candidate is not an identification; a probe under the quality floor is flagged.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceprint.audit import fmr
from faceprint.console import images
from faceprint.console.pages.common import (
    check_search_owner,
    collection_ids,
    crop_available,
    int_param,
    probe_kept,
    search_record,
    two_person,
)
from faceprint.console.web import FORM_BYTES, Ctx, Refused, endpoint
from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.console.app import Console

THRESHOLDS = (50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0, 99.0)
DEFAULT_THRESHOLD = 80.0
MAX_CANDIDATES = (5, 10, 20, 50)
SEARCH_OPERATIONS = ("SearchFacesByImage", "SearchFaces", "SearchUsers", "SearchUsersByImage")


def routes(console: Console) -> list[BaseRoute]:
    upload_limit = console.fp.limits.max_bytes + FORM_BYTES
    return [Route("/search", endpoint(console, "search", form_page), methods=["GET"]),
            Route("/search", endpoint(console, "search", search, max_body=upload_limit), methods=["POST"]),
            Route("/searches/{seq:int}", endpoint(console, "signed-in", show), methods=["GET"]),
            Route("/review/request", endpoint(console, "search", send_to_review), methods=["POST"])]


def thresholds(ctx: Ctx) -> list[dict[str, Any]]:
    profile = ctx.console.fp.profile
    return [{"value": t, "rate": fmr.false_match_rate(profile, t), "words": fmr.describe_rate(profile, t)}
            for t in THRESHOLDS]


async def form_page(ctx: Ctx, status: int = 200, message: str | None = None, **values: Any) -> Response:
    fp = ctx.console.fp
    collections = await ctx.run(collection_ids, fp)
    history = await ctx.run(_history, ctx)
    defaults = {"collection_id": collections[0] if collections else "", "purpose": "", "case": "",
                "threshold": DEFAULT_THRESHOLD, "max_faces": 10}
    return ctx.render("search.html", status, title="Search", collections=collections, thresholds=thresholds(ctx),
                      max_candidates=MAX_CANDIDATES, message=message, history=history, values=defaults | values,
                      result=None)


async def search(ctx: Ctx) -> Response:
    fp = ctx.console.fp
    values = {"collection_id": ctx.field("collection_id"), "purpose": ctx.field("purpose"), "case": ctx.field("case"),
              "threshold": _threshold(ctx.field("threshold")), "max_faces": _max_faces(ctx.field("max_faces"))}
    upload = ctx.form.get("probe") if ctx.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await form_page(ctx, 400, "Choose or drop a probe image.", **values)
    if not values["purpose"] or not values["case"]:
        return await form_page(ctx, 400, "Give the purpose and the case reference of this search.", **values)
    data = await upload.read()
    caller = ctx.caller(values["purpose"], values["case"], require_case=True)
    try:
        result = await ctx.run(fp.search_faces_by_image, values["collection_id"], data,
                               max_faces=values["max_faces"], face_match_threshold=values["threshold"],
                               caller=caller, heavy=True)
        probe = await ctx.run(images.thumbnail, fp, data, result.searched_face_bounding_box, heavy=True)
        size = (await ctx.run(fp.describe_collection, values["collection_id"])).face_count
    except FaceprintError as exc:
        return await form_page(ctx, 500 if exc.http_status >= 500 else 400, _message(exc), **values)
    matches = [{"FaceId": m.face.face_id, "ExternalImageId": m.face.external_image_id,
                "UserId": getattr(m.face, "user_id", None), "Similarity": m.similarity}
               for m in result.face_matches]
    view = await ctx.run(_view, ctx, values["collection_id"], matches)
    rate = fmr.false_match_rate(fp.profile, values["threshold"])
    summary = {"SearchId": result.audit_id, "CollectionId": values["collection_id"], "CollectionSize": size,
               "Threshold": values["threshold"], "Rate": rate, "Expected": fmr.expected_false_matches(rate, size),
               "Quality": result.probe.to_json() if result.probe is not None else None,
               "LowQuality": bool(result.probe is not None and result.probe.low_quality),
               "ProbeImage": images.data_uri(probe), "ProbeSha256": hashlib.sha256(data).hexdigest(),
               "Purpose": values["purpose"],
               "Case": values["case"], "Reviews": {},
               "TwoPerson": await ctx.run(two_person, fp, values["collection_id"])}
    return ctx.render("search.html", title="Search result", collections=[], thresholds=thresholds(ctx),
                      max_candidates=MAX_CANDIDATES, message=None, history=[], values=values, result=summary,
                      candidates=view)


async def show(ctx: Ctx) -> Response:
    """A past search, from its audit entry (the probe where the operator keeps probes, else its digest)."""
    seq = ctx.request.path_params["seq"]
    record = await ctx.run(search_record, ctx.console.fp, seq)
    check_search_owner(ctx, record)
    fp = ctx.console.fp
    entry = record.entry
    reviews = await ctx.run(_reviews, fp, seq)
    view = await ctx.run(_view, ctx, entry.collection_id, [dict(c) for c in entry.candidates])
    threshold = entry.threshold if entry.threshold is not None else 0.0
    rate = entry.false_match_rate if entry.false_match_rate is not None else fmr.false_match_rate(fp.profile, threshold)
    size = entry.collection_size or 0
    summary = {"SearchId": seq, "CollectionId": entry.collection_id, "CollectionSize": size, "Threshold": threshold,
               "Rate": rate, "Expected": fmr.expected_false_matches(rate, size), "Quality": entry.probe_quality,
               "LowQuality": entry.low_quality, "ProbeImage": None, "ProbeSha256": entry.probe_sha256,
               "Purpose": entry.caller.purpose, "Case": entry.caller.case, "Operation": entry.operation,
               "Actor": entry.caller.actor, "Started": entry.started, "Reviews": reviews,
               "Sent": ctx.request.query_params.get("sent") == "1",
               "ProbeStored": bool(entry.probe_sha256) and await ctx.run(probe_kept, fp, entry.probe_sha256),
               "TwoPerson": await ctx.run(two_person, fp, entry.collection_id)}
    return ctx.render("search.html", title=f"Search {seq}", collections=[], thresholds=thresholds(ctx),
                      max_candidates=MAX_CANDIDATES, message=None, history=[], values={}, result=summary,
                      candidates=view)


async def send_to_review(ctx: Ctx) -> Response:
    seq = int_param(ctx.field("search_id"), "search")
    face_ids = ctx.fields("face_ids")
    if not face_ids:
        raise Refused(400, "Nothing chosen", "Tick the candidates to send to review.")
    record = await ctx.run(search_record, ctx.console.fp, seq)
    check_search_owner(ctx, record)
    await ctx.run(ctx.console.fp.request_review, seq, face_ids, caller=ctx.caller())
    return ctx.redirect(f"/searches/{seq}?sent=1")


def _view(ctx: Ctx, collection_id: str | None, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates with the rate at their similarity and, where the collection keeps crops, a thumbnail."""
    profile = ctx.console.fp.profile
    out = []
    for c in candidates:
        similarity = c.get("Similarity")
        face_id = c.get("FaceId")
        out.append(c | {"Rate": fmr.false_match_rate(profile, similarity) if similarity is not None else None,
                        "Crop": bool(collection_id and face_id and crop_available(ctx.console.fp, collection_id,
                                                                                    face_id))})
    return out


def _reviews(fp: Any, seq: int) -> dict[str, dict[str, Any]]:
    try:
        return {c["FaceId"]: c for c in fp.get_review(seq)["Candidates"]}
    except FaceprintError:
        return {}


def _history(ctx: Ctx) -> list[dict[str, Any]]:
    """This user's latest searches (newest first)."""
    from faceprint.console.pages.common import recent_entries

    return [r.to_json() for r in recent_entries(ctx.console.fp, actor=ctx.user.name, kind="console",
                                                operations=SEARCH_OPERATIONS, limit=15)]


def _threshold(value: str) -> float:
    try:
        threshold = float(value)
    except ValueError:
        return DEFAULT_THRESHOLD
    return threshold if 0.0 <= threshold <= 100.0 else DEFAULT_THRESHOLD


def _max_faces(value: str) -> int:
    return int(value) if value.isdigit() and 1 <= int(value) <= max(MAX_CANDIDATES) else 10


def _message(exc: FaceprintError) -> str:
    if exc.http_status >= 500 and not getattr(exc, "safe_message", False):
        return "The search failed inside faceprint; see the server log."
    return exc.message
