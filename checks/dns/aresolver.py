"""The asynchronous resolver every check of a run shares: one cache, one question each.

``AsyncResolver.query(name, rdtype)`` returns an ``Answer`` or raises ``DnsError``
(``mailstack.checks.dns.answer``). Behaviour:

- servers come from ``--nameserver ADDR[:PORT]`` or, when none are given, from the
  system configuration (``/etc/resolv.conf``, read on first use); they are tried in
  order until one answers (``Transport``: per-server concurrency bound, timeout, TCP on
  truncation, servers that stopped answering failed fast);
- queries are sent with RD set; CNAME chains are followed (in the answer, then by new
  queries, at most 8 links); a referral (no answer, not authoritative, NS in
  authority) is followed to the glue addresses on the port of the server that
  referred, so an authoritative-only server holding delegations works as well as a
  recursive one;
- with a cache (``cached=True``, what a check run uses), answers *and errors* are kept
  for the run and concurrent askers of the same question wait for the one query in
  flight: a record several checks read is asked once, and a name that times out costs
  one timeout per run, not one per check or per domain;
- ``dnssec=True`` asks with the DO bit (EDNS0, 1232-byte payload) and CD (a validating
  resolver hands over even bogus data, so the checks can say *why* it is bogus) and
  keeps the RRSIGs of the answer and the AD flag in the ``Answer`` — the kind of
  question DNSSEC, DANE (TLSA) and DNSKEY/DS checks ask; any record type dnspython
  knows can be asked. ``message`` returns such a response whole (authority section
  included: the NSEC/NSEC3 denial proofs ``mailstack.checks.dns.dnssec`` validates),
  cached per run like the rest.

Everything here runs on one event loop (``mailstack.checks.dns.loop``); blocking code
uses the ``Resolver`` face of ``mailstack.checks.dns.resolver``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailstack.checks.defaults import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT
from mailstack.checks.dns.answer import Answer, DnsError, Reason, Server, host
from mailstack.checks.dns.transport import Stats, Transport
from mailstack.core import names
from mailstack.core.errors import MailstackError

MAX_CNAME_LINKS = 8
MAX_REFERRALS = 6
#: EDNS0 payload size with the DO bit (the DNS flag day 2020 value).
DNSSEC_PAYLOAD = 1232



def system_servers() -> tuple[Server, ...]:
    """The system resolver's servers (``/etc/resolv.conf``); read when asked, not at import."""
    try:
        configured = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration as err:
        raise MailstackError(f"no system resolver configured ({err}); use --nameserver") from err
    return tuple(Server(str(ns)) for ns in configured)


class AsyncResolver:
    """Sends every question to ``servers`` (the system's when empty), ``timeout`` per
    query, at most ``concurrency`` queries in flight per server; with ``cached``, each
    question is asked once per resolver. Use from one event loop only."""

    def __init__(
        self,
        servers: Sequence[Server] = (),
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cached: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.servers = tuple(servers)
        self.timeout = timeout
        self.concurrency = concurrency
        self.transport = Transport(timeout, concurrency)
        self._system: tuple[Server, ...] | None = None
        self._cache: dict[_Key, _Result | asyncio.Future[_Result]] | None = {} if cached else None
        self._messages: dict[tuple[str, str], asyncio.Future[dns.message.Message]] | None = {} if cached else None

    @property
    def stats(self) -> Stats:
        return self.transport.stats

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def active_servers(self) -> tuple[Server, ...]:
        if self.servers:
            return self.servers
        if self._system is None:
            self._system = system_servers()
        return self._system

    # -- typed helpers -------------------------------------------------------------

    async def txt(self, name: str) -> Answer:
        return await self.query(name, "TXT")

    async def addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of a host (both asked at once; either may be empty)."""
        a, aaaa = await asyncio.gather(self.query(name, "A"), self.query(name, "AAAA"))
        return a.addresses() + aaaa.addresses()

    async def ptr(self, address: str) -> Answer:
        return await self.query(reverse_name(address), "PTR")

    async def cname(self, name: str) -> str | None:
        """The CNAME target of ``name`` itself, None when it has no CNAME. Read from
        the answer to its A question (a server answers any type at an alias with the
        CNAME), which ``addresses`` asks too: one query, not two."""
        hop = await self._hop(names.normalize(name), "A", False)
        return hop.links[0] if hop.links else None

    async def message(self, name: str, rdtype: str) -> dns.message.Message:
        """The whole response to ``name``/``rdtype`` asked with DO and CD (referrals
        followed, CNAMEs not): what a DNSSEC validator reads. Raises DnsError like
        ``query``; with a cache, asked once per run (errors are not kept: a validation
        that could not complete asks again next time)."""
        name = names.normalize(name)
        if self._messages is None:
            return (await self._ask(name, rdtype, True))[0]
        key = (name, rdtype)
        future = self._messages.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            async def fetch() -> dns.message.Message:
                return (await self._ask(name, rdtype, True))[0]
            future = asyncio.ensure_future(fetch())
            self._messages[key] = future
        else:
            self.stats.cached += 1
        return await asyncio.shield(future)

    # -- the query -----------------------------------------------------------------

    async def query(self, name: str, rdtype: str, *, follow: bool = True, dnssec: bool = False) -> Answer:
        """Records of ``name``/``rdtype``; follow CNAMEs unless ``follow`` is False.

        Raises DnsError when no server gives a usable answer. Built from cached hops
        (one response each): asking with and without ``follow`` costs one query.
        """
        name = names.normalize(name)
        chain: list[str] = []
        current = name
        for _ in range(MAX_CNAME_LINKS + 1):
            hop = await self._hop(current, rdtype, dnssec)
            if not follow:
                if hop.links:  # the name is an alias: say so (Answer.cnames), without following
                    return Answer(name, rdtype, (), hop.links[:1], False, 0, str(hop.server))
                return Answer(name, rdtype, hop.records, (), hop.nxdomain and not hop.records, hop.ttl, str(hop.server), hop.signatures, hop.authenticated)
            chain += hop.links
            if hop.records or not hop.links:
                nxdomain = hop.nxdomain and not hop.records and not hop.links
                return Answer(name, rdtype, hop.records, tuple(chain), nxdomain, hop.ttl, str(hop.server), hop.signatures, hop.authenticated)
            if len(set(chain)) != len(chain) or chain[-1] == name:
                raise DnsError(name, rdtype, Reason.LOOP, (hop.server,), " -> ".join([name, *chain]))
            current = chain[-1]
        raise DnsError(name, rdtype, Reason.LOOP, self.active_servers(), f"more than {MAX_CNAME_LINKS} CNAMEs")

    async def _hop(self, name: str, rdtype: str, dnssec: bool) -> Hop:
        """One question's response, digested; asked once per resolver when cached
        (concurrent askers await the query in flight), errors cached too."""
        if self._cache is None:
            return await self._ask_hop(name, rdtype, dnssec)
        key = (name, rdtype, dnssec)
        entry = self._cache.get(key)
        if entry is None:
            entry = asyncio.ensure_future(self._settled(name, rdtype, dnssec))
            self._cache[key] = entry
            entry.add_done_callback(lambda done: self._keep(key, done))
            result = await asyncio.shield(entry)
        elif isinstance(entry, asyncio.Future):
            self.stats.coalesced += 1
            result = await asyncio.shield(entry)
        else:
            self.stats.cached += 1
            result = entry
        if isinstance(result, DnsError):
            raise result.copy()
        return result

    async def _settled(self, name: str, rdtype: str, dnssec: bool) -> _Result:
        try:
            return await self._ask_hop(name, rdtype, dnssec)
        except DnsError as err:
            return err

    def _keep(self, key: _Key, done: asyncio.Future[_Result]) -> None:
        """Replace the finished question's future by its value (or forget it when it
        was cancelled, so a later run of the question asks again)."""
        assert self._cache is not None
        if done.cancelled() or done.exception() is not None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = done.result()

    async def _ask_hop(self, name: str, rdtype: str, dnssec: bool) -> Hop:
        response, server = await self._ask(name, rdtype, dnssec)
        return _digest(response, name, rdtype, server)

    async def _ask(self, name: str, rdtype: str, dnssec: bool) -> tuple[dns.message.Message, Server]:
        """One question to the configured servers in turn, following referrals."""
        errors: list[DnsError] = []
        for server in self.active_servers():
            try:
                return await self._ask_following(name, rdtype, server, dnssec)
            except DnsError as err:
                errors.append(err)
        if not errors:
            raise DnsError(name, rdtype, Reason.UNREACHABLE, (), "no name server configured")
        last = errors[-1]
        servers = [s for err in errors for s in err.servers]
        raise DnsError(name, rdtype, last.reason, servers, last.detail)

    async def _ask_following(self, name: str, rdtype: str, server: Server, dnssec: bool) -> tuple[dns.message.Message, Server]:
        seen: set[Server] = set()
        for _ in range(MAX_REFERRALS):
            seen.add(server)
            query = dns.message.make_query(name, rdtype, want_dnssec=dnssec, payload=DNSSEC_PAYLOAD if dnssec else None)
            if dnssec:
                query.flags |= dns.flags.CD
            response = await self.transport.exchange(query, server, name, rdtype)
            glue = _referral_glue(response)
            if glue is None:
                return response, server
            next_servers = [Server(a, server.port) for a in glue if Server(a, server.port) not in seen]
            if not next_servers:
                raise DnsError(name, rdtype, Reason.LOOP, (server,), "referral without usable glue")
            server = next_servers[0]
        raise DnsError(name, rdtype, Reason.LOOP, (server,), f"more than {MAX_REFERRALS} referrals")


def reverse_name(address: str) -> str:
    """The PTR name of an address (``in-addr.arpa``/``ip6.arpa``)."""
    return names.normalize(dns.reversename.from_address(address).to_text())


_Key = tuple[str, str, bool]


@dataclass(frozen=True, slots=True)
class Hop:
    """One response, digested for the question it answers: the records found at the
    end of the CNAME chain the response holds (``links``, in order), with their TTL,
    the RRSIGs covering them (present when the DO bit was set), NXDOMAIN and the AD
    flag, and the server that answered."""

    records: tuple[dns.rdata.Rdata, ...]
    links: tuple[str, ...]
    ttl: int
    signatures: tuple[dns.rdata.Rdata, ...]
    nxdomain: bool
    authenticated: bool
    server: Server


_Result = Hop | DnsError


def _digest(response: dns.message.Message, name: str, rdtype: str, server: Server) -> Hop:
    wanted = dns.rdatatype.from_text(rdtype)
    current = dns.name.from_text(name)
    nxdomain = response.rcode() == dns.rcode.NXDOMAIN
    authenticated = bool(response.flags & dns.flags.AD)
    links: list[str] = []
    for _ in range(MAX_CNAME_LINKS + 1):
        rrset = next((r for r in response.answer if r.name == current and r.rdtype == wanted), None)
        if rrset is not None:
            signatures = tuple(
                sig for r in response.answer
                if r.name == current and r.rdtype == dns.rdatatype.RRSIG
                for sig in r if sig.type_covered == wanted
            )
            return Hop(tuple(rrset), tuple(links), rrset.ttl, signatures, nxdomain, authenticated, server)
        cname = next((r for r in response.answer if r.name == current and r.rdtype == dns.rdatatype.CNAME), None)
        if cname is None:
            break
        target = next(iter(cname)).target
        links.append(host(target))
        if len(set(links)) != len(links):
            break  # a loop inside one response: the caller sees the repeated link
        current = target
    return Hop((), tuple(links), 0, (), nxdomain, authenticated, server)


def _referral_glue(response: dns.message.Message) -> list[str] | None:
    """Glue addresses when the response is a referral, else None."""
    if response.answer or response.flags & dns.flags.AA or response.rcode() != dns.rcode.NOERROR:
        return None
    ns_names = {r.target for rrset in response.authority if rrset.rdtype == dns.rdatatype.NS for r in rrset}
    if not ns_names:
        return None
    return [
        r.address
        for rrset in response.additional
        if rrset.name in ns_names and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for r in rrset
    ]
