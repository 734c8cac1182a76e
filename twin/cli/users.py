"""`twin user`: accounts."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from twin.cli.common import (
    app,
    app_engine,
    domain_errors,
    err,
    load_settings,
    out,
)

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(
        help="worker, planner, commander, dispatcher, department or admin.")],
    grid: Annotated[list[str] | None, typer.Option(
        help="Micro-grid code a worker answers for (repeat for several).")] = None,
    department: Annotated[str | None, typer.Option(
        help="A department user's department code (twin cases rules).")] = None,
    subdistrict: Annotated[str | None, typer.Option(
        help="Limit what the user sees (boards, key figures, reports, the log, cases, orders) "
             "to one subdistrict, by its code; without it, the whole district.")] = None,
) -> None:
    """Add a user; the password comes from TWIN_PASSWORD or a prompt."""
    from twin.users import add_user, hash_password

    settings = load_settings()
    password = os.environ.get("TWIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            err.print("[bold red]error:[/] set TWIN_PASSWORD or run in a terminal to be asked")
            raise typer.Exit(1)
        password = getpass.getpass(f"password for {name}: ")
    with domain_errors():
        engine = app_engine(settings)
        user = add_user(engine, name, role, hash_password(password), grid or [], department,
                        subdistrict)
        grids = f" for {', '.join(user.grids)}" if user.grids else ""
        grids += f" of {user.department}" if user.department else ""
        grids += f" in subdistrict {user.subdistrict}" if user.subdistrict else ""
        out.print(f"added {user.role} {user.name}{grids}")


@user_app.command("list")
def user_list() -> None:
    """Every user: role, micro-grids, whether active."""
    from twin.users import list_users

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        table = Table("user", "role", "micro-grids", "subdistrict", "active")
        for user, active in list_users(engine):
            table.add_row(user.name, user.role, " ".join(user.grids), user.subdistrict or "all",
                          "yes" if active else "no")
    out.print(table)


@user_app.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Deactivate a user (a lost tablet, a worker who left) and revoke their tokens."""
    from twin.users import disable_user

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        revoked = disable_user(engine, name)
    out.print(f"disabled {name}; {revoked} token(s) revoked")
