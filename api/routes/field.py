"""The grid worker's tablet page ``/field`` and the service worker that keeps it usable offline.

The page needs no token to load: it signs in itself and keeps its edits in IndexedDB. What
it cannot ask the API for while offline (each layer's title, geometry type and colours) is
written into the page from the layer registry.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from api.errors import media
from api.html import layers_json

router = APIRouter(tags=["field"])

_STATIC = files("twin") / "static" / "field"
TITLE = "网格员 Twin Field"


@router.get("/field", response_class=HTMLResponse, summary="The grid worker's tablet page")
def field_page() -> HTMLResponse:
    html = (_STATIC / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{title}}", escape(TITLE))
                        .replace("{{layers}}", layers_json()),
                        headers={"Cache-Control": "no-cache"})


@router.get("/field/sw.js", summary="The field page's service worker (offline page shell)",
            response_class=Response, responses=media("text/javascript"))
def service_worker() -> Response:
    # Served here rather than under /static so that it may control /field itself.
    return Response((_STATIC / "sw.js").read_text(encoding="utf-8"),
                    media_type="text/javascript",
                    headers={"Service-Worker-Allowed": "/field", "Cache-Control": "no-cache"})
