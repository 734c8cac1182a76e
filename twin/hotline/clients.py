"""Outside systems that file and read orders through Open311 (twin.hotline.open311): one API
key each, shown once when the client is added and kept only as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, NotFound, Problem

# A client's name goes into the numbers of the orders it files ("O311-<name>-<16 hex>", at
# most 64 characters), so it is shorter than the table's own limit.
MAX_NAME = 40
NAME = re.compile(rf"[A-Za-z0-9_.-]{{2,{MAX_NAME}}}")


def key_hash(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def add_client(conn: Connection, name: str) -> str:
    """Register a client; its new API key (the only time it is seen)."""
    if not NAME.fullmatch(name):
        raise InvalidInput(f"client name {name!r}: 2-{MAX_NAME} letters, digits, '.', '_' "
                           "or '-'", [Problem("name", name, f"2-{MAX_NAME} letters, digits, "
                                              "'.', '_' or '-'", "客户端名称格式错误")])
    key = secrets.token_urlsafe(24)
    added = conn.execute(text(
        "INSERT INTO twin.open311_clients (name, key_hash) VALUES (:name, :hash) "
        "ON CONFLICT (name) DO NOTHING RETURNING name"),
        {"name": name, "hash": key_hash(key)}).scalar()
    if added is None:
        raise InvalidInput(f"client name {name!r} is taken", [Problem(
            "name", name, "a client already has this name", "客户端名称已被使用")])
    return key


def client_for_key(conn: Connection, key: str) -> str | None:
    """The name of the active client holding ``key``, or None."""
    name = conn.execute(text(
        "SELECT name FROM twin.open311_clients WHERE key_hash = :hash AND active"),
        {"hash": key_hash(key)}).scalar()
    return None if name is None else str(name)


def list_clients(conn: Connection) -> list[dict[str, Any]]:
    """Every client, active or not, by name (never the key's hash)."""
    return [dict(r) for r in conn.execute(text(
        "SELECT name, active, created_at FROM twin.open311_clients ORDER BY name")).mappings()]


def deactivate_client(conn: Connection, name: str) -> None:
    """Stop a client's key from working (the client and its orders remain)."""
    found = conn.execute(text(
        "UPDATE twin.open311_clients SET active = false WHERE name = :name RETURNING name"),
        {"name": name}).scalar()
    if found is None:
        raise NotFound(f"no Open311 client {name!r}", [Problem(
            "name", name, "no client has this name", "无此客户端")])
