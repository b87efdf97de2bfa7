"""The review queue: candidates sent to review, each beside its probe, and the reviewer's decision.

With a collection's two-person rule on, a candidate is "confirmed" only once two different
reviewers confirm it (faceprint.audit.review decides; one person confirming twice counts once).
Every decision is an audit entry, written before the queue changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceprint.audit import fmr
from faceprint.console.pages.common import crop_available, int_param, probe_kept
from faceprint.console.web import Ctx, Refused, endpoint
from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.console.app import Console

TABS = ("open", "awaiting-second", "pending", "inconclusive", "confirmed", "rejected")
PAGE = 25
DECISIONS = {"confirm": "CONFIRMED", "reject": "REJECTED", "inconclusive": "INCONCLUSIVE"}


def routes(console: Console) -> list[BaseRoute]:
    return [Route("/review", endpoint(console, "review", queue), methods=["GET"]),
            Route("/review/decide", endpoint(console, "decide", decide), methods=["POST"])]


async def queue(ctx: Ctx) -> Response:
    params = ctx.request.query_params
    tab = params.get("status") if params.get("status") in TABS else "open"
    token = params.get("next") or None
    sections = await ctx.run(_sections, ctx, tab, token)
    decided = await ctx.run(_decided, ctx, params.get("decided"))
    return ctx.render("review.html", title="Review", tabs=TABS, tab=tab, sections=sections, decided=decided)


async def decide(ctx: Ctx) -> Response:
    seq = int_param(ctx.field("search_id"), "search")
    face_id = ctx.field("face_id")
    decision = DECISIONS.get(ctx.field("decision"))
    if decision is None or not face_id:
        raise Refused(400, "Bad request", "Choose confirm, reject or inconclusive for one candidate.")
    note = ctx.field("note") or None
    await ctx.run(ctx.console.fp.review_candidate, seq, face_id, decision, note=note, caller=ctx.caller())
    tab = ctx.field("tab") if ctx.field("tab") in TABS else "open"
    return ctx.redirect(f"/review?status={tab}&decided={seq}:{face_id}")


def _sections(ctx: Ctx, tab: str, token: str | None) -> list[dict[str, Any]]:
    fp = ctx.console.fp
    statuses = ("awaiting-second", "pending") if tab == "open" else (tab,)
    sections = []
    for status in statuses:
        page = fp.list_reviews(status=status, max_results=PAGE, next_token=token if tab != "open" else None)
        sections.append({"status": status, "rows": [_item(ctx, c) for c in page["Candidates"]],
                         "next": page.get("NextToken")})
    return sections


def _item(ctx: Ctx, candidate: dict[str, Any]) -> dict[str, Any]:
    fp = ctx.console.fp
    search = fp.audit_log.get(candidate["SearchId"])
    caller = search.entry.caller if search is not None else None
    similarity = candidate.get("Similarity")
    sha = candidate.get("ProbeSha256")
    mine = [d for d in candidate.get("Decisions", []) if d.get("Reviewer", "").casefold() == ctx.user.name.casefold()]
    return candidate | {
        "Rate": fmr.false_match_rate(fp.profile, similarity) if similarity is not None else None,
        "ProbeStored": bool(sha) and probe_kept(fp, sha),
        "Crop": bool(candidate.get("CollectionId")) and crop_available(fp, candidate["CollectionId"],
                                                                       candidate["FaceId"]),
        "SearchedBy": caller.actor if caller else None, "Case": caller.case if caller else None,
        "Purpose": caller.purpose if caller else None, "SearchedAt": search.entry.started if search else None,
        "LowQuality": bool(search and search.entry.low_quality),
        "Mine": mine[-1]["Decision"] if mine else None,
    }


def _decided(ctx: Ctx, value: str | None) -> dict[str, Any] | None:
    if not value or ":" not in value:
        return None
    seq, face_id = value.split(":", 1)
    if not seq.isdigit():
        return None
    try:
        found = ctx.console.fp.get_review(int(seq))["Candidates"]
    except FaceprintError:
        return None
    return next((c for c in found if c["FaceId"] == face_id), None)
