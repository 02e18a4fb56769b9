"""One DNS message to one server, politely: bounded concurrency, a per-query timeout,
TCP on truncation, and a server that stopped answering is not waited for again.

``Transport.exchange`` sends with dnspython's ``dns.asyncquery`` (a fresh UDP socket
and random source port per query, the answer matched to the question), so a run of
thousands of questions interleaves them on one event loop. Per server:

- at most ``concurrency`` queries are in flight (the polite default is
  ``DEFAULT_CONCURRENCY``; a recursive resolver or an authoritative server sees no
  more than that from one run);
- ``DOWN_AFTER`` timeouts in a row with no answer in between mark the server as not
  answering: further questions to it fail at once with a ``timeout`` naming it (their
  checks report ``error`` in bounded time, not one timeout each) until, ``timeout``
  seconds later, one query is let through as a probe; an answer marks it up again.

A timeout is one attempt per server and question (as ``mailstack check`` always did);
the resolver tries the next configured server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from mailstack.checks.defaults import DEFAULT_CONCURRENCY
from mailstack.checks.dns.answer import DnsError, Reason, Server

#: Timeouts in a row after which a server counts as not answering.
DOWN_AFTER = 3


@dataclass
class Stats:
    """What a run asked: questions sent, answered from the cache, joined to an
    identical question already in flight, and timeouts (including fast failures of a
    server marked down)."""

    sent: int = 0
    cached: int = 0
    coalesced: int = 0
    timeouts: int = 0
    not_asked: int = 0


@dataclass
class _ServerState:
    limit: asyncio.Semaphore
    timeouts_in_a_row: int = 0
    down_since: float | None = None
    probing: bool = False


@dataclass
class Transport:
    """Exchanges messages with servers; holds the per-server limits and health."""

    timeout: float
    concurrency: int = DEFAULT_CONCURRENCY
    stats: Stats = field(default_factory=Stats)
    _servers: dict[Server, _ServerState] = field(default_factory=dict, repr=False)

    def _state(self, server: Server) -> _ServerState:
        state = self._servers.get(server)
        if state is None:
            state = self._servers[server] = _ServerState(asyncio.Semaphore(max(1, self.concurrency)))
        return state

    def is_down(self, server: Server) -> bool:
        """True while the server counts as not answering."""
        state = self._servers.get(server)
        return state is not None and state.down_since is not None

    def _admit(self, name: str, rdtype: str, server: Server, state: _ServerState) -> bool:
        """Whether to send; raises DnsError at once for a server that is down, except
        for one probe per ``timeout`` seconds. True when this query is the probe."""
        if state.down_since is None:
            return False
        if not state.probing and time.monotonic() - state.down_since >= self.timeout:
            state.probing = True
            return True
        self.stats.timeouts += 1
        self.stats.not_asked += 1
        raise DnsError(
            name, rdtype, Reason.TIMEOUT, (server,),
            f"not asked: the server stopped answering ({state.timeouts_in_a_row} queries in a row got no answer within {self.timeout:g}s)",
        )

    async def exchange(self, query: dns.message.Message, server: Server, name: str, rdtype: str) -> dns.message.Message:
        """The server's response to ``query`` (the question ``name``/``rdtype``, for
        errors); DnsError for no usable response (timeout, unreachable, malformed,
        SERVFAIL, REFUSED, other error rcodes)."""
        state = self._state(server)
        probe = self._admit(name, rdtype, server, state)
        try:
            async with state.limit:
                response = await self._send(query, server, name, rdtype)
        except DnsError as err:
            if err.reason is Reason.TIMEOUT:
                self.stats.timeouts += 1
                state.timeouts_in_a_row += 1
                if state.timeouts_in_a_row >= DOWN_AFTER or probe:
                    state.down_since = time.monotonic()
            raise
        finally:
            if probe:
                state.probing = False
        state.timeouts_in_a_row = 0
        state.down_since = None
        return _checked(response, name, rdtype, server)

    async def _send(self, query: dns.message.Message, server: Server, name: str, rdtype: str) -> dns.message.Message:
        self.stats.sent += 1
        try:
            response = await dns.asyncquery.udp(query, server.address, timeout=self.timeout, port=server.port, ignore_unexpected=True)
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(query, server.address, timeout=self.timeout, port=server.port)
        except dns.exception.Timeout as err:
            raise DnsError(name, rdtype, Reason.TIMEOUT, (server,), f"no answer within {self.timeout:g}s") from err
        except OSError as err:
            raise DnsError(name, rdtype, Reason.UNREACHABLE, (server,), err.strerror or str(err)) from err
        except dns.exception.DNSException as err:
            raise DnsError(name, rdtype, Reason.MALFORMED, (server,), str(err)) from err
        return response


def _checked(response: dns.message.Message, name: str, rdtype: str, server: Server) -> dns.message.Message:
    rcode = response.rcode()
    if rcode == dns.rcode.SERVFAIL:
        raise DnsError(name, rdtype, Reason.SERVFAIL, (server,))
    if rcode == dns.rcode.REFUSED:
        raise DnsError(name, rdtype, Reason.REFUSED, (server,))
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsError(name, rdtype, Reason.RCODE, (server,), dns.rcode.to_text(rcode))
    return response
