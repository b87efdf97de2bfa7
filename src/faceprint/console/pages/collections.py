"""Collections: their faces (external ids, users; thumbnails where the collection keeps face
crops), and deleting faces (admin). Also the image answers: crops and stored probes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceprint.console import images
from faceprint.console.pages.common import collection_ids, crop_available
from faceprint.console.web import Ctx, Refused, endpoint

if TYPE_CHECKING:
    from faceprint.console.app import Console

PAGE = 100
MAX_DELETE = 1000


def routes(console: Console) -> list[BaseRoute]:
    return [Route("/collections", endpoint(console, "collections", overview), methods=["GET"]),
            Route("/collection", endpoint(console, "collections", collection), methods=["GET"]),
            Route("/collection/delete-faces", endpoint(console, "delete", delete_faces), methods=["POST"]),
            Route("/crop", endpoint(console, "signed-in", crop), methods=["GET"]),
            Route("/probe/{sha256}", endpoint(console, "signed-in", probe), methods=["GET"])]


async def overview(ctx: Ctx) -> Response:
    rows = await ctx.run(_overview, ctx.console.fp)
    return ctx.render("collections.html", title="Collections", rows=rows)


def _overview(fp: Any) -> list[dict[str, Any]]:
    rows = []
    for cid in collection_ids(fp)[:1000]:
        described = fp.describe_collection(cid)
        rows.append({"CollectionId": cid, "Faces": described.face_count, "Users": described.user_count,
                     "Created": described.creation_timestamp, **fp.settings_store.get(cid).to_json()})
    return rows


async def collection(ctx: Ctx) -> Response:
    cid = ctx.request.query_params.get("c", "")
    token = ctx.request.query_params.get("next") or None
    view = await ctx.run(_collection, ctx.console.fp, cid, token)
    deleted = ctx.request.query_params.get("deleted")
    return ctx.render("collection.html", title=f"Collection {cid}", cid=cid, deleted=deleted, **view)


def _collection(fp: Any, cid: str, token: str | None) -> dict[str, Any]:
    described = fp.describe_collection(cid)
    page = fp.list_faces(cid, max_results=PAGE, next_token=token)
    settings = fp.settings_store.get(cid)
    faces = [{"FaceId": f.face_id, "ExternalImageId": f.external_image_id, "UserId": f.user_id,
              "ImageId": f.image_id, "Crop": settings.keep_face_crops and crop_available(fp, cid, f.face_id)}
             for f in page.faces]
    users = fp.list_users(cid, max_results=100).users
    return {"described": described, "faces": faces, "next": page.next_token, "settings": settings.to_json(),
            "users": [{"UserId": u.user_id, "Status": u.user_status} for u in users]}


async def delete_faces(ctx: Ctx) -> Response:
    cid = ctx.field("collection_id")
    face_ids = ctx.fields("face_ids")
    if not face_ids:
        raise Refused(400, "Nothing chosen", "Tick the faces to delete.")
    if len(face_ids) > MAX_DELETE:
        raise Refused(400, "Too many", f"Delete at most {MAX_DELETE} faces at once.")
    caller = ctx.caller(purpose=ctx.field("reason") or None, case=ctx.field("case") or None)
    result = await ctx.run(ctx.console.fp.delete_faces, cid, face_ids, caller=caller)
    from urllib.parse import urlencode

    return ctx.redirect("/collection?" + urlencode({"c": cid, "deleted": len(result.deleted_faces)}))


async def crop(ctx: Ctx) -> Response:
    """A face crop, where its collection keeps them."""
    cid, face_id = ctx.request.query_params.get("c", ""), ctx.request.query_params.get("f", "")
    try:
        data = await ctx.run(ctx.console.fp.crops.get, cid, face_id)
    except (ValueError, OSError):
        data = None
    if not data:
        raise Refused(404, "Not found", "No crop is kept for this face.")
    return Response(data, media_type="image/jpeg")


async def probe(ctx: Ctx) -> Response:
    """A stored probe, re-encoded as a JPEG thumbnail (never its bytes as uploaded)."""
    fp = ctx.console.fp
    data = await ctx.run(fp.probe_store.get, ctx.request.path_params["sha256"])
    if not data:
        raise Refused(404, "Not found", "This probe is not kept.")
    jpeg = await ctx.run(images.thumbnail, fp, data, heavy=True)
    return Response(jpeg, media_type="image/jpeg")
