"""Reading one untrusted configuration value at a time, collecting errors by key path.

Shared by every section parser (``mailstack.config.stack``, ``mailstack.config.dns``,
``mailstack.config.gateway``): each accessor validates one value, records a
ConfigError naming its key when the value is wrong, and returns None, so a whole
declaration is read in one pass and every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mailstack.core.errors import ConfigError

T = TypeVar("T")
#: A key path inside the ``mailstack:`` namespace: ("gateways", 1, "ipv4").
Path = tuple[str | int, ...]


class ConfigReader:
    """Collects errors while reading; every accessor returns None after reporting."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def fail(self, path: Path, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping with keys {', '.join(allowed)}")
            return None
        for key in value:
            if key not in allowed:
                self.fail((*path, str(key)), f"unknown key (expected one of {', '.join(allowed)})")
        return dict(value)

    def sequence(self, value: Any, path: Path) -> list[Any] | None:
        if value is None:
            return []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            self.fail(path, "must be a list")
            return None
        return list(value)

    def convert(self, value: Any, path: Path, convert: Callable[[Any], T]) -> T | None:
        try:
            return convert(value)
        except (ValueError, TypeError) as err:
            self.fail(path, str(err))
            return None

    def choice(self, value: Any, path: Path, choices: tuple[str, ...], default: str | None = None) -> str | None:
        if value is None:
            return default
        if value not in choices:
            self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return str(value)

    def integer(self, value: Any, path: Path, low: int, high: int, default: int | None = None) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool):
            self.fail(path, f"{value!r} is not an integer")
            return None
        try:
            number = int(str(value), 10)
        except ValueError:
            self.fail(path, f"{value!r} is not an integer")
            return None
        if not low <= number <= high:
            self.fail(path, f"{number} is not between {low} and {high}")
            return None
        return number

    def boolean(self, value: Any, path: Path, default: bool = False) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        self.fail(path, f"{value!r} is not true or false")
        return default

    def string(self, value: Any, path: Path) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return None
        return value.strip()
