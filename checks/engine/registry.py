"""The check registry: small functions registered by stable id and group.

``@check("spf.lookups", group="spf", ref="RFC 7208 §4.6.4")`` registers a function
``(ctx) -> list[Finding]``: an ``async def`` (it awaits its observations on the DNS
event loop: what DNS checks are) or a plain function (it runs in a worker thread and may
block: SMTP, the lab's end-to-end probes). Ids are unique (a duplicate is a programming
error raised at registration), config disables checks by id, ``--only`` selects
groups. The lab's ``e2e`` group registers into the same registry with the same decorator.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar, cast

from mailstack.checks.engine.finding import Finding

if TYPE_CHECKING:
    from mailstack.checks.engine.context import CheckContext

F = TypeVar("F", bound=Callable[..., object])

CheckFunction: TypeAlias = "Callable[[CheckContext], list[Finding]] | Callable[[CheckContext], Awaitable[list[Finding]]]"

#: Modules whose import registers the built-in checks, in report order.
BUILTIN_MODULES = (
    "mailstack.checks.groups.spf",
    "mailstack.checks.groups.dkim",
    "mailstack.checks.groups.dmarc",
    "mailstack.checks.groups.mx",
    "mailstack.checks.groups.mta_sts",
    "mailstack.checks.groups.published",
    "mailstack.checks.groups.odoo",
    "mailstack.checks.groups.odoo_settings",
    "mailstack.checks.groups.imap",
    "mailstack.checks.groups.smtp",
    "mailstack.checks.groups.e2e",
    "mailstack.checks.groups.e2e_inbound",
    "mailstack.checks.groups.e2e_imap",
    "mailstack.checks.groups.dkim_rotation",
    "mailstack.checks.groups.reputation",
    "mailstack.checks.groups.dnssec",
    "mailstack.checks.groups.dane",
)


class DuplicateCheck(ValueError):
    """Two checks registered under one id."""


@dataclass(frozen=True, slots=True)
class Check:
    """One registered check."""

    id: str
    group: str
    function: CheckFunction
    ref: str = ""
    title: str = ""

    @property
    def is_async(self) -> bool:
        """True for an ``async def`` check (run on the event loop, not in a thread)."""
        return inspect.iscoroutinefunction(self.function)


_REGISTRY: dict[str, Check] = {}


def check(id: str, *, group: str | None = None, ref: str = "", title: str = "") -> Callable[[F], F]:
    """Register ``function`` as the check ``id`` (group defaults to the id's prefix)."""

    def register(function: F) -> F:
        if id in _REGISTRY:
            raise DuplicateCheck(f"check id {id!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        _REGISTRY[id] = Check(id, group or id.split(".", 1)[0], cast("CheckFunction", function), ref, title or (doc[0] if doc else id))
        return function

    return register


def load_builtin() -> None:
    """Import the built-in check modules (idempotent: modules import once)."""
    for name in BUILTIN_MODULES:
        importlib.import_module(name)


def all_checks() -> list[Check]:
    """Every registered check, in registration order."""
    return list(_REGISTRY.values())


def get(id: str) -> Check:
    """The check registered as ``id``; KeyError when there is none."""
    return _REGISTRY[id]


def groups() -> list[str]:
    """The registered groups in first-registration order."""
    return list(dict.fromkeys(c.group for c in _REGISTRY.values()))


def select(only: Iterable[str] = (), disabled: Iterable[str] = ()) -> list[Check]:
    """The checks to run: those of the ``only`` groups (all when empty), minus the
    ``disabled`` ids. Unknown group or id names raise ValueError (a typo must not
    silently run nothing)."""
    only = list(only)
    disabled = set(disabled)
    unknown_groups = [g for g in only if g not in groups()]
    if unknown_groups:
        raise ValueError(f"unknown check group(s): {', '.join(unknown_groups)} (known: {', '.join(groups())})")
    unknown_ids = sorted(disabled - set(_REGISTRY))
    if unknown_ids:
        raise ValueError(f"unknown check id(s): {', '.join(unknown_ids)}")
    return [c for c in _REGISTRY.values() if (not only or c.group in only) and c.id not in disabled]
