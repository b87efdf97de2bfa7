"""The audit record: search and filter its entries, verify the chain, download the report and an
export (auditor and admin; read-only)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from faceprint.console.web import Ctx, Refused, endpoint

if TYPE_CHECKING:
    from faceprint.audit.log import AuditFilter
    from faceprint.console.app import Console

PAGE = 50
OPERATIONS = ("SearchFacesByImage", "SearchFaces", "SearchUsers", "SearchUsersByImage", "CompareFaces", "IndexFaces",
              "DeleteFaces", "DeleteCollection", "StartFaceSearch", "FaceSearchJobCompleted", "StreamProcessorMatch",
              "ReviewRequested", "ReviewDecision", "KeyCreated", "KeyDeleted", "KeyUpdated", "KeyRotated",
              "ConsoleUserChanged", "CollectionSettingsChanged", "Erase", "RetentionDeleted", "Prune")
FIELDS = ("since", "until", "actor", "operation", "collection", "case")


def routes(console: Console) -> list[BaseRoute]:
    return [Route("/audit", endpoint(console, "audit", entries), methods=["GET"]),
            Route("/audit/verify", endpoint(console, "audit", verify), methods=["POST"]),
            Route("/audit/report", endpoint(console, "audit", report), methods=["GET"]),
            Route("/audit/export.csv", endpoint(console, "audit", export_csv), methods=["GET"])]


def _filters(params: Any) -> tuple[AuditFilter, dict[str, str]]:
    from faceprint.audit.log import AuditFilter

    values = {name: (params.get(name) or "").strip()[:500] for name in FIELDS}
    filters = AuditFilter(since=_day(values["since"], "since"), until=_day(values["until"], "until", end=True),
                          actor=values["actor"] or None, operation=values["operation"] or None,
                          collection_id=values["collection"] or None, case=values["case"] or None)
    return filters, values


def _day(value: str, name: str, end: bool = False) -> float | None:
    """A YYYY-MM-DD date (UTC) as epoch seconds: its start, or with ``end`` its last moment."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise Refused(400, "Bad date", f"The {name} date must be YYYY-MM-DD.") from None
    return (day + timedelta(days=1)).timestamp() - 0.001 if end else day.timestamp()


async def entries(ctx: Ctx, verified: Any = None) -> Response:
    fp = ctx.console.fp
    filters, values = _filters(ctx.request.query_params)
    token = ctx.request.query_params.get("next") or None
    if ctx.request.query_params.get("latest") == "1":
        head, _ = await ctx.run(fp.audit_log.head)
        token = str(max(0, head - PAGE)) if filters == type(filters)() else None
    page = await ctx.run(fp.audit_entries, filters, max_results=PAGE, next_token=token)
    return ctx.render("audit.html", title="Audit", entries=page["Entries"], next=page.get("NextToken"),
                      values=values, operations=OPERATIONS, verified=verified,
                      query_string=ctx.request.url.query)


async def verify(ctx: Ctx) -> Response:
    report = await ctx.run(ctx.console.fp.verify_audit, heavy=True)
    verified = {"ok": report.ok, "entries": report.entries, "first": report.first_seq, "last": report.last_seq,
                "head": report.head_hash, "heads": report.heads_checked, "seals": report.seals_checked,
                "problems": [p.to_json() for p in report.problems], "more": report.more_problems,
                "notes": list(report.notes)}
    return await entries(ctx, verified)


async def report(ctx: Ctx) -> Response:
    filters, _ = _filters(ctx.request.query_params)
    body = await ctx.run(ctx.console.fp.audit_report, filters.since, filters.until, heavy=True)
    return Response(json.dumps(body, indent=2, ensure_ascii=False), media_type="application/json",
                    headers={"content-disposition": 'attachment; filename="faceprint-audit-report.json"'})


async def export_csv(ctx: Ctx) -> Response:
    filters, _ = _filters(ctx.request.query_params)
    return StreamingResponse(_csv(ctx.console.fp.audit_log, filters), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": 'attachment; filename="faceprint-audit.csv"'})


def _csv(log: Any, filters: AuditFilter) -> Iterator[str]:
    """The matching entries as CSV, a few hundred rows at a time (Starlette runs it on a thread)."""
    from faceprint.audit.export import CSV_COLUMNS, csv_row, matching

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for count, record in enumerate(matching(log, filters), 1):
        writer.writerow(csv_row(record))
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
