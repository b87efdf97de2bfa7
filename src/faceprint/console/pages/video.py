"""Video jobs and stream processors: their status, and for face search the timeline of who
appears when (a stored video's results; a stream processor's matches from the audit record)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceprint.console.pages.common import recent_entries
from faceprint.console.web import Ctx, endpoint

if TYPE_CHECKING:
    from faceprint.console.app import Console

MAX_TIMELINE = 20_000
"""PersonMatch items read for one timeline (20 pages of Rekognition's 1,000)."""
MAX_ROWS = 50
STREAM_MATCHES = 500


def routes(console: Console) -> list[BaseRoute]:
    return [Route("/video", endpoint(console, "video", overview), methods=["GET"]),
            Route("/video/job", endpoint(console, "video", job), methods=["GET"]),
            Route("/video/stream", endpoint(console, "video", stream), methods=["GET"])]


async def overview(ctx: Ctx) -> Response:
    token = ctx.request.query_params.get("next") or None
    jobs = await ctx.run(ctx.console.fp.list_video_jobs, max_results=50, next_token=token)
    processors = await ctx.run(_processors, ctx.console.fp)
    return ctx.render("video.html", title="Video", jobs=jobs["Jobs"], next=jobs.get("NextToken"),
                      processors=processors)


def _processors(fp: Any) -> list[dict[str, Any]]:
    out = []
    listed = fp.list_stream_processors(max_results=100).to_dict().get("StreamProcessors", [])
    for p in listed:
        described = fp.describe_stream_processor(p["Name"]).to_dict()
        search = (described.get("Settings") or {}).get("FaceSearch") or {}
        out.append({"Name": p["Name"], "Status": described.get("Status"),
                    "StatusMessage": described.get("StatusMessage"), "CollectionId": search.get("CollectionId"),
                    "Threshold": search.get("FaceMatchThreshold"), "Updated": described.get("LastUpdateTimestamp")})
    return out


async def job(ctx: Ctx) -> Response:
    job_id = ctx.request.query_params.get("id", "")
    view = await ctx.run(_job, ctx.console.fp, job_id)
    return ctx.render("video_job.html", title=f"Video job {job_id}", job_id=job_id, **view)


def _job(fp: Any, job_id: str) -> dict[str, Any]:
    first = fp.get_face_search(job_id, max_results=1000).to_dict()
    persons = list(first.get("Persons") or [])
    token = first.get("NextToken")
    while token and len(persons) < MAX_TIMELINE:
        page = fp.get_face_search(job_id, max_results=1000, next_token=token).to_dict()
        persons.extend(page.get("Persons") or [])
        token = page.get("NextToken")
    duration = ((first.get("VideoMetadata") or {}).get("DurationMillis")) or max(
        (p.get("Timestamp", 0) for p in persons), default=0)
    seen: dict[str, list[tuple[int, float]]] = {}
    for p in persons:
        for match in p.get("FaceMatches") or []:
            face = match.get("Face") or {}
            who = face.get("ExternalImageId") or face.get("UserId") or face.get("FaceId") or "?"
            seen.setdefault(who, []).append((int(p.get("Timestamp", 0)), float(match.get("Similarity", 0))))
    return {"job_status": first.get("JobStatus"), "message": first.get("StatusMessage"),
            "timeline": timeline(seen, 0, max(1, int(duration))), "duration": duration,
            "truncated": bool(token), "unmatched": sum(1 for p in persons if not p.get("FaceMatches"))}


async def stream(ctx: Ctx) -> Response:
    name = ctx.request.query_params.get("name", "")
    view = await ctx.run(_stream, ctx.console.fp, name)
    return ctx.render("video_stream.html", title=f"Stream processor {name}", name=name, **view)


def _stream(fp: Any, name: str) -> dict[str, Any]:
    described = fp.describe_stream_processor(name).to_dict()
    records = recent_entries(fp, actor=f"stream-processor:{name}", kind="system",
                             operations=("StreamProcessorMatch",), limit=STREAM_MATCHES)
    seen: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for c in r.entry.candidates:
            who = c.get("ExternalImageId") or c.get("UserId") or c.get("FaceId") or "?"
            seen.setdefault(who, []).append((int(r.entry.started * 1000), float(c.get("Similarity") or 0)))
    times = [t for marks in seen.values() for t, _ in marks]
    start, end = (min(times), max(times)) if times else (0, 1)
    return {"described": described, "timeline": timeline(seen, start, max(end, start + 1)), "start": start,
            "end": end, "matches": len(records), "limit": STREAM_MATCHES}


def timeline(seen: dict[str, list[tuple[int, float]]], start: int, end: int) -> list[dict[str, Any]]:
    """One row per person matched: marks at their times (ms) as fractions of [start, end] for an SVG."""
    span = max(1, end - start)
    rows = []
    for who, marks in sorted(seen.items(), key=lambda item: min(t for t, _ in item[1])):
        rows.append({"who": who, "count": len(marks), "first": min(t for t, _ in marks),
                     "last": max(t for t, _ in marks), "best": max(s for _, s in marks),
                     "marks": sorted({round(1000 * (t - start) / span) / 10 for t, _ in marks})})
    return rows[:MAX_ROWS]
