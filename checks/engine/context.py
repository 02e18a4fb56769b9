"""What every check receives: the target, its declaration (if any), DNS and options.

One ``CheckContext`` is shared by all checks of a run, which execute concurrently; the
``memo`` lets several checks share one fetch (the SPF tree, the DMARC record) so a
domain is queried once per run, and is safe across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailstack.checks.dns.resolver import Resolver
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.plan import Plan

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """How SMTP checks talk to the MX hosts."""

    port: int = 25
    timeout: float = 10.0
    #: The name we announce in EHLO (the CLI uses this host's FQDN; receivers that check
    #: HELO names refuse an unresolvable one, and ``refused_us`` then reports error).
    helo: str = "mailstack-check.invalid"
    #: An external recipient for the open-relay probe (never delivered: no DATA).
    relay_probe: str = "relay-probe@mailstack-check.invalid"


@dataclass(frozen=True, slots=True)
class HttpsOptions:
    """How the MTA-STS policy is fetched: port 443 and the system CAs, except in tests."""

    port: int = 443
    cafile: str | None = None
    timeout: float = 10.0


@dataclass
class CheckContext:
    """The target of a run. ``plan`` is None in ``--domain`` mode.

    ``plan`` is the stack's record plan (made with the gateway's DKIM public key when it
    was given, so that record compares by content); ``dkim_private_key`` (PEM bytes)
    enables the signed-probe check.
    """

    domain: str
    resolver: Resolver
    plan: Plan | None = None
    dkim_private_key: bytes | None = None
    smtp: SmtpOptions = field(default_factory=SmtpOptions)
    https: HttpsOptions = field(default_factory=HttpsOptions)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stack(self) -> MailDomain | None:
        """The declaration, None in ``--domain`` mode."""
        return self.plan.stack if self.plan else None

    @property
    def planned(self) -> tuple[Record, ...]:
        """The planned records (none in ``--domain`` mode)."""
        return self.plan.records if self.plan else ()

    @property
    def gateway_key(self) -> str | None:
        """The gateway's DKIM public key the plan was made with, if given."""
        return self.plan.gateway_key if self.plan else None

    @property
    def declared(self) -> bool:
        """True when a declaration gives expectations (``--stack``/``--stack-file``)."""
        return self.stack is not None

    @property
    def domains(self) -> tuple[str, ...]:
        """The mail domains checked: the main domain and the declared alias domains."""
        return self.stack.domains if self.stack else (self.domain,)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per key and run; concurrent callers wait for the first.

        An exception is not cached: each caller that needs the value sees it raised.
        """
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._memo:
                value: T = self._memo[key]
                return value
            value = compute()
            self._memo[key] = value
            return value
