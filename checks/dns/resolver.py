"""DNS for code that blocks: the shared asynchronous resolver behind plain method calls.

``Resolver`` is the face of an ``AsyncResolver`` (``mailstack.checks.dns.aresolver``)
for synchronous callers — pyspf's and dkimpy's lookup functions, the SMTP, HTTPS and
end-to-end probes, ``mailstack diff``. Each call hands the question to the process's
DNS event loop (``mailstack.checks.dns.loop``) and waits for the answer, so a blocking
probe and an async check of the same run share one cache, one question in flight and
the same per-server limits. ``aio`` is the async resolver itself, for code running on
the loop (the check engine and its async checks); calling a blocking method from the
loop raises ``LoopReentry`` instead of deadlocking.

This module is the DNS layer's public face: the value types (``Answer``, ``DnsError``,
``Reason``, ``Server``, ``parse_server``) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstack.checks.defaults import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT
from mailstack.checks.dns import loop
from mailstack.checks.dns.answer import Answer, DnsError, Reason, Server, parse_server
from mailstack.checks.dns.aresolver import AsyncResolver, system_servers
from mailstack.checks.dns.transport import Stats

__all__ = [
    "DEFAULT_CONCURRENCY", "DEFAULT_TIMEOUT", "Answer", "AsyncResolver", "DnsError", "Reason", "Resolver", "Server", "Stats",
    "parse_server", "system_servers",
]


class Resolver:
    """Sends every query to ``servers`` (the system's when empty), ``timeout`` per query.

    Thread safe: every call runs on the one DNS loop. Uncached unless made by
    ``cached()`` (one check run) — polling (``diff --wait``) must ask again.
    """

    def __init__(
        self,
        servers: Sequence[Server] = (),
        timeout: float = DEFAULT_TIMEOUT,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        aio: AsyncResolver | None = None,
    ) -> None:
        self.aio = aio or AsyncResolver(servers, timeout, concurrency=concurrency)

    @property
    def servers(self) -> tuple[Server, ...]:
        return self.aio.servers

    @property
    def timeout(self) -> float:
        return self.aio.timeout

    @property
    def stats(self) -> Stats:
        return self.aio.stats

    def cached(self) -> Resolver:
        """A resolver with the same servers and limits and a cache of answers *and
        errors* for one check run: checks that ask the same question share the answer,
        and a name that timed out costs one timeout per run, not one per check."""
        return Resolver(aio=AsyncResolver(self.servers, self.timeout, cached=True, concurrency=self.aio.concurrency))

    @classmethod
    def from_strings(cls, servers: Sequence[str], timeout: float = DEFAULT_TIMEOUT, *, concurrency: int = DEFAULT_CONCURRENCY) -> Resolver:
        """A resolver for ``--nameserver`` values."""
        return cls(tuple(parse_server(s) for s in servers), timeout, concurrency=concurrency)

    def active_servers(self) -> tuple[Server, ...]:
        return self.aio.active_servers()

    def query(self, name: str, rdtype: str, *, follow: bool = True, dnssec: bool = False) -> Answer:
        """Records of ``name``/``rdtype``; follow CNAMEs unless ``follow`` is False.

        Raises DnsError when no server gives a usable answer.
        """
        return loop.run(self.aio.query(name, rdtype, follow=follow, dnssec=dnssec))

    def txt(self, name: str) -> Answer:
        return loop.run(self.aio.txt(name))

    def addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of a host (both queried; either may be empty)."""
        return loop.run(self.aio.addresses(name))

    def ptr(self, address: str) -> Answer:
        return loop.run(self.aio.ptr(address))

    def cname(self, name: str) -> str | None:
        """The CNAME target of ``name`` itself, None when it has no CNAME."""
        return loop.run(self.aio.cname(name))
