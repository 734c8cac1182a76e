"""The public pages: landing page and conformance (no token needed)."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from api.html import link_list, page, wants_html
from twin import __version__
from twin.features.cql import CONFORMANCE as CQL2_CONFORMANCE

router = APIRouter(tags=["landing"])

# OGC API - Features - Part 4: Create, Replace, Update and Delete (OGC 20-002r1, draft;
# opengeospatial/ogcapi-features, extensions/transactions/create-replace-update-delete/
# standard/clause_2_conformance.adoc): POST, PUT, DELETE; PATCH; ETags with If-Match (428
# without one, 412 when stale). Not "features": a request body's Content-Crs is not read.
PART4 = [f"http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/{name}"
         for name in ("create-replace-delete", "update", "optimistic-locking-etags")]
# Part 5: Schemas, /collections/{layer}/schema. The approved standard (OGC 23-058r2, 2026,
# published as Features Part 5 and Common Part 3: its 23-058r2.adoc sets the URIs' standard
# to ogcapi-common-3; annex_ats.adoc names the classes), and the draft's URIs (OGC 23-058,
# ogcapi-features-5, 23-058.adoc and clause_2_conformance.adoc), which clients test for:
# QGIS reads a collection's schema only when it finds .../ogcapi-features-5/1.0/conf/schemas.
PART5 = [*(f"http://www.opengis.net/spec/ogcapi-common-3/1.0/conf/{name}" for name in (
             "schemas", "advanced-property-roles", "returnables-and-receivables")),
         *(f"http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/{name}" for name in (
             "schemas", "core-roles-features", "returnables-and-receivables"))]

# Only what is implemented; each class is tested in tests/features/ (test_features, test_ogc,
# test_edits, test_clients).
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    *CQL2_CONFORMANCE,
    *PART4,
    *PART5,
]


# The pages people open in a browser; each signs in itself. The banner of `twin serve`
# lists them too.
PAGES = (
    ("/map", "指挥中心地图", "Command centre map", "planners, commanders, admins"),
    ("/dashboard", "指挥中心大屏", "Command centre board (16:9; ?layout=32:9)",
     "the command centre's big screen"),
    ("/field", "网格员平板", "Grid worker's tablet (works offline)", "grid workers"),
)


def _links(base: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "type": "application/json", "title": "this document 本页",
         "href": f"{base}/"},
        {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
         "title": "the API definition 接口定义", "href": f"{base}/api"},
        {"rel": "service-doc", "type": "text/html", "title": "the API documentation 接口文档",
         "href": f"{base}/api.html"},
        {"rel": "conformance", "type": "application/json",
         "title": "conformance classes 符合性类", "href": f"{base}/conformance"},
        {"rel": "data", "type": "application/json", "title": "the layers 图层",
         "href": f"{base}/collections"},
        *({"rel": "related", "type": "text/html", "title": f"{zh} {en}", "href": f"{base}{path}"}
          for path, zh, en, _who in PAGES),
    ]


# What a browser may open from the landing page that needs a token: the sign-in page comes
# first (a 401 in HTML), then the answer itself.
SIGNED_IN = (("/collections", "图层 The layers (OGC API - Features)"),
             ("/stats", "统计 Features per layer, changes, content hash"),
             ("/kpis", "指标 Key figures per micro-grid"),
             ("/changes", "变更日志 The change log, newest first"))


def _landing_html(body: dict[str, Any]) -> str:
    pages = "".join(f'<li><a href="{path}">{escape(zh)} {escape(en)}</a> — {escape(who)}</li>'
                    for path, zh, en, who in PAGES)
    public = link_list([link for link in body["links"]
                        if link["rel"] in ("service-doc", "service-desc", "conformance")])
    signed = "".join(f'<li><a href="{path}">{escape(title)}</a> 🔒</li>'
                     for path, title in SIGNED_IN)
    return (f"<p>{escape(body['description'])}</p>"
            "<h2>页面 Pages</h2><p>Each page asks you to sign in 每个页面自行登录.</p>"
            f"<ul>{pages}</ul>"
            f"<h2>接口 API</h2><p>Open to everyone 公开:</p>{public}"
            "<p>🔒 需登录 Sign-in needed: the browser shows a sign-in form first, once "
            "(the pages above share it); programs send <code>Authorization: Bearer</code> with "
            "a token from <code>POST /auth/token</code> (OAuth2 password flow).</p>"
            f"<ul>{signed}</ul>")


@router.get("/", summary="Landing page")
def landing(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    body: dict[str, Any] = {
        "title": "Twin 数字孪生",
        "description": "A digital twin of a city subdistrict: tagged layers, every change "
                       "kept. 街道数字孪生：分层要素与标签，全过程数据留痕。",
        "version": __version__,
        "links": _links(base),
    }
    if not wants_html(request):
        return JSONResponse(body)
    return page("Twin 数字孪生", _landing_html(body))


SWAGGER_UI = "/static/swagger-ui"


@router.get("/api.html", include_in_schema=False)
def api_docs() -> HTMLResponse:
    """Swagger UI on the OpenAPI document, its script, styles and icon served from here:
    the page works with no internet (FastAPI's default loads them from a CDN)."""
    return get_swagger_ui_html(
        openapi_url="/api", title="Twin 数字孪生: API 接口文档",
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url="/favicon.ico")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Twin's icon (a grid), where every browser looks for one."""
    return FileResponse(str(files("twin") / "static" / "favicon.png"), media_type="image/png",
                        headers={"Cache-Control": "max-age=86400"})


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE}
