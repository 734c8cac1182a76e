"""The one family of domain errors; the API maps each kind to an HTTP status in one table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    """One thing wrong with the input: which field, what value, why (in English and Chinese)."""

    field: str
    value: Any
    reason: str
    reason_zh: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "reason": self.reason,
                "reason_zh": self.reason_zh}


@dataclass
class TwinError(Exception):
    """Base of every error the domain raises on purpose."""

    message: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class InvalidInput(TwinError):
    """The request names a value the twin cannot accept."""


class NotFound(TwinError):
    """The thing asked for does not exist."""


class Unauthorized(TwinError):
    """No valid credentials were given."""


class Forbidden(TwinError):
    """The credentials are valid but do not allow this."""


class Conflict(TwinError):
    """The twin changed since the caller last saw it."""


@dataclass
class IllegalMove(Conflict):
    """A case was asked to move where its state does not lead."""

    allowed: list[str] = field(default_factory=list)  # where it may go from here


class Unprocessable(TwinError):
    """The request is well formed but what it asks for breaks the twin's rules (a feature's
    model, geometry or place)."""


class TooLarge(TwinError):
    """The request carries more than the twin accepts (a photo over its size cap)."""


class UnsupportedMediaType(TwinError):
    """The content is not of a type the twin stores (a photo that is not JPEG or PNG)."""


@dataclass
class PreconditionFailed(TwinError):
    """An edit was based on a version that is no longer current."""

    current: dict[str, Any] = field(default_factory=dict)  # the current version and ETag


class PreconditionRequired(TwinError):
    """An edit of an existing feature did not say which version it was based on."""


class DatabaseUnavailable(TwinError):
    """PostgreSQL cannot be reached."""


def revive(kind: str, message: str, problems: list[Problem]) -> TwinError:
    """An error kept by its kind's name (a stored answer, given again to a retry), as the
    error it was: one of this module's kinds, or the base when the name is not one."""
    kinds: dict[str, type[TwinError]] = {}
    todo = [TwinError]
    while todo:
        for cls in todo.pop().__subclasses__():
            kinds[cls.__name__] = cls
            todo.append(cls)
    return kinds.get(kind, TwinError)(message, problems)
