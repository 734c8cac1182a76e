"""Plain, readable HTML for people with a browser (the JSON is for programs)."""

from __future__ import annotations

from html import escape

from fastapi import Request
from fastapi.responses import HTMLResponse


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
