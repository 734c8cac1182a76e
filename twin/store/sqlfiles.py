"""Long SQL lives in ``twin/store/sql/*.sql``, next to the code that runs it."""

from functools import cache
from importlib.resources import files


@cache
def sql(name: str) -> str:
    """The text of ``twin/store/sql/<name>.sql``."""
    return (files("twin.store") / "sql" / f"{name}.sql").read_text(encoding="utf-8")
