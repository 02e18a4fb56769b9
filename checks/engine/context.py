"""What every check receives: the target, its declaration (if any), DNS and options.

One ``CheckContext`` is shared by all checks of a target, which execute concurrently:
async checks on the DNS event loop, blocking ones in worker threads. Several checks
share one observation (the SPF tree, the DMARC record) through a memo, so a name is
fetched once per run: ``observe`` for async checks (concurrent callers await the one
fetch in flight), ``memo`` for blocking ones (thread safe). ``dns`` is the run's
async resolver, ``resolver`` its blocking face; both share one cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailstack.checks.dns import loop
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.dnssec import Anchors
from mailstack.checks.dns.resolver import Resolver
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.plan import Plan

T = TypeVar("T")

#: The threads blocking probes (pyspf, dkimpy, SMTP, HTTPS) run in, set by the runner
#: for the tasks of a run; None outside a run (the loop's default executor).
PROBE_THREADS: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("mailstack_probe_threads", default=None)


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


@dataclass(frozen=True, slots=True)
class DnssecOptions:
    """Where DNSSEC validation starts: ``anchors`` parsed from ``--trust-anchor FILE``
    (``mailstack.checks.dns.dnssec.parse_anchors``), None for the system's root anchor."""

    anchors: Anchors | None = None


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How the MX certificates' chains are verified: ``cafile`` (``--ca-file``) or the
    system trust store."""

    cafile: str | None = None


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
    #: ``--blocklist`` zones: replace the stack's ``checks.blocklists`` and the default.
    blocklists: tuple[str, ...] | None = None
    dnssec: DnssecOptions = field(default_factory=DnssecOptions)
    tls: TlsOptions = field(default_factory=TlsOptions)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _observed: dict[str, asyncio.Future[Any]] = field(default_factory=dict, repr=False)

    @property
    def dns(self) -> AsyncResolver:
        """The run's async resolver (for async checks, on the event loop)."""
        return self.resolver.aio

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

    def observe(self, key: str, fetch: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """``fetch()`` once per key and target, started as a task on first call; await
        the result. Concurrent callers await the one fetch in flight (each through its
        own shield: a caller cancelled at its deadline never cancels the fetch others
        wait for). Returning the future rather than being a coroutine matters at fleet
        scale: awaiting 1,000 domains' observations creates no task per domain. An
        exception is not cached: the callers of that fetch see it raised, a later
        call fetches again."""
        future = self._observed.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            future = asyncio.ensure_future(fetch())
            self._observed[key] = future
        return asyncio.shield(future)

    async def blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking ``function(*args)`` (pyspf, dkimpy, a socket probe) in the
        run's probe threads; its DNS goes through ``resolver``, i.e. the same cache."""
        running = asyncio.get_running_loop()
        return await running.run_in_executor(PROBE_THREADS.get(), functools.partial(function, *args))

    def wait(self, start: Callable[[], Awaitable[T]]) -> T:
        """From a blocking check (a worker thread): ``await start()`` on the DNS loop and
        return the result — e.g. an ``observe`` memo shared with the async checks."""
        async def run() -> T:
            return await start()
        return loop.run(run())


async def gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await every one concurrently (one per domain or name), results in order."""
    return list(await asyncio.gather(*awaitables))


async def settled(awaitables: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Like ``gather``, but an exception is returned in its place instead of raised,
    so one name's DNS error becomes that name's ``error`` finding."""
    return list(await asyncio.gather(*awaitables, return_exceptions=True))
