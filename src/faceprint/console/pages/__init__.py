"""The console's pages, one module per area; ``routes(console)`` lists them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from faceprint.console.app import Console


def routes(console: Console) -> list[BaseRoute]:
    from faceprint.console.pages import audit, auth, collections, review, search, users, video

    modules = (auth, search, review, collections, video, audit, users)
    return [route for module in modules for route in module.routes(console)]
