"""The public pages: landing page and conformance (no token needed)."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.html import link_list, page, wants_html
from twin import __version__
from twin.cql import CONFORMANCE as CQL2_CONFORMANCE

router = APIRouter(tags=["landing"])

# Only what is implemented; each class is tested in tests/test_features.py and friends.
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    *CQL2_CONFORMANCE,
]


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
    ]


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
    return page("Twin 数字孪生", f"<p>{escape(body['description'])}</p>"
                f"{link_list(body['links'])}<p>Sign in 登录: POST /auth/token</p>")


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE}
