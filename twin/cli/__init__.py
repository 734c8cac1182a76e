"""The ``twin`` command, a module per command group. The order of the imports below is the
order of ``twin --help``; ``serve`` alone reaches into ``api`` (lazily, when it runs)."""

# isort: off
# each module registers its commands on the app
from twin.cli import sample  # noqa: F401
from twin.cli import history  # noqa: F401
from twin.cli import cases  # noqa: F401
from twin.cli import hotline  # noqa: F401
from twin.cli import imports  # noqa: F401
from twin.cli import layers  # noqa: F401
from twin.cli import analysis  # noqa: F401
from twin.cli import serve  # noqa: F401
from twin.cli import outputs  # noqa: F401
from twin.cli import database  # noqa: F401
from twin.cli import users  # noqa: F401
# isort: on
from twin.cli.common import app

__all__ = ["app"]
