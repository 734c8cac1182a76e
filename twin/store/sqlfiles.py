"""Long SQL lives in ``twin/store/sql/*.sql``, next to the code that runs it."""

from functools import cache
from importlib.resources import files
from pathlib import Path

SQL_DIR = Path(str(files("twin.store") / "sql"))


@cache
def sql(name: str) -> str:
    """The text of ``twin/store/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
