"""Orders in from the city hotline system's export: a CSV (UTF-8, or GB18030 as Excel on
Chinese Windows writes it) or an Excel workbook, one order per row, its columns named in
Chinese as the city system exports them or in English. Types, rules and channels may be
written as their Chinese names or codes. Each bad row is named with its row number, field,
value and reason; the import itself is twin.hotline.loop.receive_orders (idempotent by order
number: a re-import updates what changed and logs it)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, Problem
from twin.hotline.loop import Codes, Order, codes, order_problems

# field: the headings it goes by (the city system's first)
COLUMNS = {
    "order_number": ("工单编号", "工单号", "order_number"),
    "received_at": ("受理时间", "来电时间", "received_at"),
    "kind": ("诉求类型", "工单类型", "kind"),
    "duty": ("责任规则", "办理方式", "duty"),
    "channel": ("来源渠道", "渠道", "channel"),
    "category": ("案件类别", "category"),
    "words": ("诉求内容", "来电内容", "words"),
    "address": ("诉求地址", "事发地址", "address"),
    "caller_name": ("来电人", "联系人", "caller_name"),
    "caller_phone": ("联系电话", "来电号码", "caller_phone"),
}
REQUIRED = ("order_number", "received_at", "kind", "duty")
CHANNEL_NAMES = {"电话": "phone", "网站": "web", "网页": "web", "随申办": "app", "app": "app",
                 "APP": "app", "微信": "wechat", "其他": "other"}


@dataclass(frozen=True)
class Row:
    """One row of the file: its number (the heading is row 1) and the order, or problems."""

    number: int
    order: Order | None
    problems: tuple[Problem, ...] = ()


def _records(path: Path) -> Iterator[list[Any]]:
    """The file's rows as lists of cells, its heading first."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook  # only Excel files need it

        book = load_workbook(path, read_only=True, data_only=True)
        try:
            for cells in book.worksheets[0].iter_rows(values_only=True):
                yield list(cells)
        finally:
            book.close()
        return
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InvalidInput(f"{path}: neither UTF-8 nor GB18030", [Problem(
            "file", str(path), "text in UTF-8 or GB18030", "文件编码须为UTF-8或GB18030")])
    yield from csv.reader(content.splitlines())


def _time(value: Any, zone: str) -> datetime:
    """A cell's time; one written without an offset is the subdistrict's local time."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(
        str(value).strip().replace("/", "-"))
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def _names(conn: Connection) -> dict[str, dict[str, str]]:
    """Chinese names of kinds and duties -> their codes."""
    return {table: {r.name_zh: r.code for r in conn.execute(text(
        f"SELECT code, name_zh FROM twin.{table}"))}  # noqa: S608
        for table in ("order_kinds", "order_duties")}


def read_orders(conn: Connection, path: Path, zone: str) -> Iterator[Row]:
    """Each data row of the export as an order, or the problems that keep it out."""
    if not path.is_file():
        raise InvalidInput(f"no file {path}", [Problem("file", str(path), "no such file",
                                                        "文件不存在")])
    rows = _records(path)
    heading = [str(h or "").strip() for h in next(rows, [])]
    where: dict[str, int] = {}
    for field, names in COLUMNS.items():
        found = next((heading.index(n) for n in names if n in heading), None)
        if found is not None:
            where[field] = found
    missing = [f for f in REQUIRED if f not in where]
    if missing:
        raise InvalidInput(f"{path}: no column for {', '.join(missing)}", [Problem(
            f, heading, f"a column headed {' or '.join(COLUMNS[f])}", "缺少必需列")
            for f in missing])
    by_name = _names(conn)
    known = codes(conn)
    for number, cells in enumerate(rows, start=2):
        if not any(c not in (None, "") for c in cells):
            continue
        yield _row(number, {f: cells[i] if i < len(cells) else None for f, i in where.items()},
                   by_name, known, zone)


def _row(number: int, cell: dict[str, Any], names: dict[str, dict[str, str]], known: Codes,
         zone: str) -> Row:
    def value(field: str) -> str | None:
        raw = cell.get(field)
        text_value = "" if raw is None else str(raw).strip()
        return text_value or None

    try:
        received = _time(cell["received_at"], zone)
    except (TypeError, ValueError):
        return Row(number, None, (Problem("received_at", cell["received_at"],
                                          "a time like 2026-03-02 09:15", "受理时间格式错误"),))
    kind = value("kind") or ""
    duty = value("duty") or ""
    channel = value("channel") or "phone"
    order = Order(
        order_number=value("order_number") or "", received_at=received,
        kind=names["order_kinds"].get(kind, kind), duty=names["order_duties"].get(duty, duty),
        channel=CHANNEL_NAMES.get(channel, channel), category=value("category"),
        words=value("words") or "", address=value("address") or "",
        caller_name=value("caller_name"), caller_phone=value("caller_phone"))
    problems = order_problems(order, known)
    return Row(number, None if problems else order, tuple(problems))
