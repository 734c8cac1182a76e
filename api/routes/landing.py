"""The public pages: landing page and conformance (no token needed)."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from twin import __version__

router = APIRouter(tags=["landing"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
]


def _links(base: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "type": "application/json", "title": "this document 本页",
         "href": f"{base}/"},
        {"rel": "service-desc", "type": "application/vnd.oai.openapi+json",
         "title": "the API definition 接口定义", "href": f"{base}/api"},
        {"rel": "service-doc", "type": "text/html", "title": "the API documentation 接口文档",
         "href": f"{base}/api.html"},
        {"rel": "conformance", "type": "application/json",
         "title": "conformance classes 符合性类", "href": f"{base}/conformance"},
    ]


def _wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f:
        return f == "html"
    return "text/html" in request.headers.get("accept", "")


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
    if not _wants_html(request):
        return JSONResponse(body)
    items = "".join(f'<li><a href="{escape(link["href"])}">{escape(link["title"])}</a></li>'
                    for link in body["links"])
    return HTMLResponse(
        f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>Twin 数字孪生"
        f"</title></head><body><h1>Twin 数字孪生</h1><p>{escape(body['description'])}</p>"
        f"<ul>{items}</ul><p>Sign in 登录: POST /auth/token</p></body></html>")


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE}
