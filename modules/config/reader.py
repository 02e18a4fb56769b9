"""Reading one untrusted configuration value at a time, collecting errors by key path.

Shared by every section parser (``mailstack.config.stack``, ``mailstack.config.dns``,
``mailstack.config.gateway``): each accessor validates one value, records a
ConfigError naming its key when the value is wrong, and returns None, so a whole
declaration is read in one pass and every problem is reported at once.

Every string read here passes ``kinds.text`` first (no control characters, bounded
length), whatever the accessor; lists and mappings are bounded in size; messages quote
at most ``QUOTE_LIMIT`` characters of a value; and after ``MAX_ERRORS`` errors the rest
are only counted, so a hostile stack costs bounded time and memory to refuse.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mailstack.config import kinds
from mailstack.core.errors import ConfigError, format_path, quote
from mailstack.rules.limits import Limit

T = TypeVar("T")
#: A key path inside the ``mailstack:`` namespace: ("gateways", 1, "ipv4").
Path = tuple[str | int, ...]

#: Errors reported one by one; beyond, one line says how many more there are.
MAX_ERRORS = 50
#: Entries of a list whose key sets no limit of its own.
LIST_LIMIT = Limit(100, "no mailstack list needs more")


class ConfigReader:
    """Collects errors while reading; every accessor returns None after reporting."""

    def __init__(self) -> None:
        self._errors: list[ConfigError] = []
        self.suppressed = 0

    @property
    def errors(self) -> list[ConfigError]:
        """The errors so far; one last error counts those beyond MAX_ERRORS."""
        if not self.suppressed:
            return list(self._errors)
        more = ConfigError((), f"... and {self.suppressed} more errors (only the first {MAX_ERRORS} are shown)")
        return [*self._errors, more]

    @property
    def error_count(self) -> int:
        """Every error so far, those only counted included (compare before and after
        reading a section to know whether it failed)."""
        return len(self._errors) + self.suppressed

    def fail(self, path: Path, message: str) -> None:
        if len(self._errors) >= MAX_ERRORS:
            self.suppressed += 1
            return
        self._errors.append(ConfigError(path, message))

    def has_error(self, prefix: Path) -> bool:
        """True when a key at or below ``prefix`` was refused already (so a rule that
        depends on it says nothing more: one mistake, one message)."""
        return self.suppressed > 0 or any(e.path[: len(prefix)] == prefix for e in self._errors)

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping with keys {', '.join(allowed)}")
            return None
        for key in value:
            if key not in allowed:
                if len(self._errors) >= MAX_ERRORS:
                    self.suppressed += 1  # not even the "did you mean": bounded time
                    continue
                self.fail((*path, str(key)), unknown_key(key, path, allowed))
        return dict(value)

    def sequence(self, value: Any, path: Path, limit: Limit = LIST_LIMIT, what: str = "entries") -> list[Any] | None:
        if value is None:
            return []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            self.fail(path, "must be a list")
            return None
        problem = limit.exceeded(len(value), what)
        if problem:
            self.fail(path, problem)
            return None
        return list(value)

    def convert(self, value: Any, path: Path, convert: Callable[[Any], T], *, lines: bool = False) -> T | None:
        """``convert(value)``; any string is checked by ``kinds.text`` first (``lines``:
        line breaks allowed, for a PEM block)."""
        try:
            if isinstance(value, str):
                kinds.text(value, lines=lines)
            return convert(value)
        except (ValueError, TypeError) as err:
            self.fail(path, _bounded(str(err)))
            return None

    def choice(self, value: Any, path: Path, choices: tuple[str, ...], default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            self.fail(path, f"{quote(value)} is not one of {', '.join(choices)}")
            return None
        return value

    def integer(self, value: Any, path: Path, low: int, high: int, default: int | None = None) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(path, f"{quote(value)} is not an integer")
            return None
        if isinstance(value, str) and (len(value) > 20 or not value.strip().lstrip("+-").isdigit()):
            self.fail(path, f"{quote(value)} is not an integer")
            return None
        number = int(value)
        if not low <= number <= high:
            shown = str(number) if abs(number) < 10**20 else "a number of more than 20 digits"
            self.fail(path, f"{shown} is not between {low} and {high}")
            return None
        return number

    def boolean(self, value: Any, path: Path, default: bool = False) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(path, f"{quote(value)} is not true or false")
        return default

    def string(self, value: Any, path: Path, kind: kinds.Kind = kinds.text) -> str | None:
        """A string of ``kind`` (default: any text without control characters)."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(path, "must be a non-empty string")
            return None
        return self.convert(value, path, kind)


def unknown_key(key: Any, path: Path, allowed: tuple[str, ...] | list[str]) -> str:
    """``unknown key: did you mean mailstack:dmarc.policy? (expected one of ...)``."""
    hint = suggestion(key, allowed)
    did_you_mean = f"; did you mean {format_path((*path, hint))}?" if hint else ""
    return f"unknown key{did_you_mean} (expected one of {', '.join(allowed)})"


def suggestion(key: Any, known: tuple[str, ...] | list[str]) -> str | None:
    """The known key a misspelt one was most likely meant to be (case or a few
    letters off), None when nothing is close."""
    if not isinstance(key, str) or len(key) > 100:
        return None
    for name in known:
        if name.lower() == key.lower():
            return name
    lowered = {name.lower(): name for name in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def _bounded(message: str, limit: int = 300) -> str:
    """A message from a converter, cut if a value slipped into it whole."""
    return message if len(message) <= limit else message[: limit - 3] + "..."
