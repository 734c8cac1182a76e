"""Plain, readable HTML for people with a browser (the JSON is for programs)."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from html import escape
from importlib.resources import files

from fastapi import Request
from fastapi.responses import HTMLResponse

from twin.registry import all_layers, layer_cache, spec_of


def wants_html(request: Request) -> bool:
    """``f=html``, or a browser asking for HTML without saying f."""
    f = request.query_params.get("f")
    if f:
        return f == "html"
    return "text/html" in request.headers.get("accept", "")


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        f"td,th{{padding:.2em .8em;text-align:left}}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}</body></html>")


def link_list(links: list[dict[str, str]]) -> str:
    items = "".join(f'<li><a href="{escape(link["href"])}">{escape(link.get("title", link["rel"]))}'
                    f"</a></li>" for link in links)
    return f"<ul>{items}</ul>"


@cache
def sign_in_page() -> str:
    """The page a browser gets where the API needs a token (twin/static/signin)."""
    return (files("twin") / "static" / "signin" / "index.html").read_text(encoding="utf-8")


@layer_cache
@cache
def layers_json() -> str:
    """Each layer's title, geometry type, group and colours, for a page's script (written
    into the page: the field page needs them offline), and a digest of its spec: a tablet
    told of a layer declared or changed since its page was loaded (its scope carries these
    too) reads the layer's form again."""
    layers = {name: {"title": layer.title, "geometry_type": layer.geometry_type,
                     "group": layer.group, "color": layer.style.color,
                     "by_state": layer.style.by_state, "state_field": layer.state_field,
                     "spec": hashlib.sha1(json.dumps(spec_of(name), sort_keys=True).encode(),
                                          usedforsecurity=False).hexdigest()[:12]}
              for name, layer in all_layers().items()}
    return script_json(layers)


def script_json(value: object) -> str:
    """JSON to write into a page's script element: "<" escaped, so that no title can close
    the element it is written into."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
