"""DNS for the checks: dnspython queries to injectable servers, typed answers, typed errors.

Why not ``dns.resolver.Resolver`` as is: the checks must tell "no such record" (a fact
to judge) from "could not ask" (timeout, SERVFAIL, REFUSED: undecidable), and must name
the server that failed. So every query goes through ``Resolver.query``, which returns an
``Answer`` (records, CNAME chain, NXDOMAIN flag) or raises ``DnsError`` — never a
sentinel string, never a half answer.

Behaviour:
- servers come from ``--nameserver ADDR[:PORT]`` (``parse_server``) or, when none are
  given, from the system configuration (``/etc/resolv.conf``, read on first use);
- queries are sent with RD set, over UDP with the per-query ``timeout``, retried over
  TCP when the answer is truncated; servers are tried in order until one answers;
- CNAME chains are followed (in the answer, then by new queries, at most 8 links);
- a referral (no answer, not authoritative, NS in authority) is followed to the glue
  addresses, on the port of the server that referred, so an authoritative-only server
  holding delegations (tests, a hidden primary) works as well as a recursive one.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailstack.core import names, txt
from mailstack.core.errors import MailstackError

MAX_CNAME_LINKS = 8
MAX_REFERRALS = 6
DEFAULT_TIMEOUT = 3.0


class Reason(StrEnum):
    """Why a query could not be answered."""

    TIMEOUT = "timeout"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"
    RCODE = "error rcode"
    UNREACHABLE = "unreachable"
    MALFORMED = "malformed answer"
    LOOP = "CNAME or referral loop"


@dataclass(frozen=True, slots=True, order=True)
class Server:
    """One name server: an address and a port."""

    address: str
    port: int = 53

    def __str__(self) -> str:
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def parse_server(text: str) -> Server:
    """Parse ``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or a bare IPv6 address."""
    value = text.strip()
    address, port = value, 53
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not ADDR[:PORT]")
            port = _port(text, rest[1:])
    elif value.count(":") == 1:
        address, port_text = value.split(":")
        port = _port(text, port_text)
    try:
        ipaddress.ip_address(address)
    except ValueError as err:
        raise ValueError(f"{text!r}: {address!r} is not an IP address") from err
    return Server(address, port)


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: {port!r} is not a port number")
    return int(port)


class DnsError(MailstackError):
    """A query that got no usable answer; the check that asked reports ``error``."""

    def __init__(self, name: str, rdtype: str, reason: Reason, servers: Sequence[Server], detail: str = "") -> None:
        self.name = name
        self.rdtype = rdtype
        self.reason = reason
        self.servers = tuple(servers)
        self.detail = detail
        where = ", ".join(str(s) for s in self.servers) or "no server"
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{reason.value} from {where} for {name} {rdtype}{extra}")


@dataclass(frozen=True, slots=True)
class Answer:
    """The records of one name and type, after following CNAMEs.

    ``records`` is empty for NODATA and NXDOMAIN (``nxdomain`` tells them apart);
    ``cnames`` lists the names the query was redirected through, first the queried
    name's own target. ``void`` is RFC 7208's "void lookup": nothing came back.
    """

    name: str
    rdtype: str
    records: tuple[dns.rdata.Rdata, ...]
    cnames: tuple[str, ...] = ()
    nxdomain: bool = False
    ttl: int = 0
    server: str = ""

    @property
    def void(self) -> bool:
        return not self.records

    @property
    def canonical(self) -> str:
        """The name the records were found at (the end of the CNAME chain)."""
        return self.cnames[-1] if self.cnames else self.name

    def texts(self) -> tuple[str, ...]:
        """TXT records, each the concatenation of its character-strings (RFC 7208 §3.3)."""
        return tuple(txt.from_wire(r.strings) for r in self.records)  # type: ignore[attr-defined]

    def addresses(self) -> tuple[str, ...]:
        """A/AAAA records as normalised address strings."""
        return tuple(str(ipaddress.ip_address(r.address)) for r in self.records)  # type: ignore[attr-defined]

    def mx(self) -> tuple[tuple[int, str], ...]:
        """MX records as (preference, host) sorted, host without the trailing dot
        (``"."`` for a null MX)."""
        pairs = [(int(r.preference), _host(r.exchange)) for r in self.records]  # type: ignore[attr-defined]
        return tuple(sorted(pairs))

    def targets(self) -> tuple[str, ...]:
        """CNAME/PTR/NS targets without the trailing dot."""
        return tuple(_host(r.target) for r in self.records)  # type: ignore[attr-defined]


def _host(name: dns.name.Name) -> str:
    text = name.to_text()
    return "." if text == "." else names.normalize(text)


def system_servers() -> tuple[Server, ...]:
    """The system resolver's servers (``/etc/resolv.conf``); read when asked, not at import."""
    try:
        configured = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration as err:
        raise MailstackError(f"no system resolver configured ({err}); use --nameserver") from err
    return tuple(Server(str(ns)) for ns in configured)


@dataclass
class Resolver:
    """Sends every query to ``servers`` (the system's when empty), ``timeout`` per query.

    Thread safe: it holds no per-query state, so the runner shares one across checks.
    """

    servers: tuple[Server, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    _system: tuple[Server, ...] | None = field(default=None, repr=False)
    #: Answers and errors by question, when caching (``cached()``); None: always ask.
    _cache: dict[tuple[str, str, bool], Answer | DnsError] | None = field(default=None, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _locks: dict[tuple[str, str, bool], threading.Lock] = field(default_factory=dict, repr=False)

    def cached(self) -> Resolver:
        """The same resolver with a cache of answers *and errors* for one check run:
        checks that ask the same question share the answer, and a name that timed out
        costs one timeout per run, not one per check. Not for polling (``diff --wait``)."""
        return Resolver(self.servers, self.timeout, self._system, {})

    @classmethod
    def from_strings(cls, servers: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> Resolver:
        """A resolver for ``--nameserver`` values."""
        return cls(tuple(parse_server(s) for s in servers), timeout)

    def active_servers(self) -> tuple[Server, ...]:
        if self.servers:
            return self.servers
        if self._system is None:
            self._system = system_servers()
        return self._system

    # -- typed helpers -------------------------------------------------------------

    def txt(self, name: str) -> Answer:
        return self.query(name, "TXT")

    def addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of a host (both queried; either may be empty)."""
        return self.query(name, "A").addresses() + self.query(name, "AAAA").addresses()

    def ptr(self, address: str) -> Answer:
        return self.query(names.normalize(dns.reversename.from_address(address).to_text()), "PTR")

    def cname(self, name: str) -> str | None:
        """The CNAME target of ``name`` itself, None when it has no CNAME."""
        answer = self.query(name, "CNAME", follow=False)
        targets = answer.targets()
        return targets[0] if targets else None

    # -- the query -----------------------------------------------------------------

    def query(self, name: str, rdtype: str, *, follow: bool = True) -> Answer:
        """Records of ``name``/``rdtype``; follow CNAMEs unless ``follow`` is False.

        Raises DnsError when no server gives a usable answer.
        """
        name = names.normalize(name)
        if self._cache is None:
            return self._query(name, rdtype, follow)
        key = (name, rdtype, follow)
        with self._cache_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # concurrent askers of one question wait for the first answer
            hit = self._cache.get(key)
            if hit is None:
                try:
                    hit = self._query(name, rdtype, follow)
                except DnsError as err:
                    hit = err
                self._cache[key] = hit
        if isinstance(hit, DnsError):
            raise hit
        return hit

    def _query(self, name: str, rdtype: str, follow: bool) -> Answer:
        chain: list[str] = []
        current = name
        for _ in range(MAX_CNAME_LINKS + 1):
            response, server = self._ask(current, rdtype)
            records, links, ttl = _extract(response, current, rdtype, follow)
            chain += links
            if records or not links or not follow:
                nxdomain = response.rcode() == dns.rcode.NXDOMAIN and not records and not links
                return Answer(name, rdtype, tuple(records), tuple(chain), nxdomain, ttl, str(server))
            if len(set(chain)) != len(chain) or chain[-1] == name:
                raise DnsError(name, rdtype, Reason.LOOP, (server,), " -> ".join([name, *chain]))
            current = chain[-1]
        raise DnsError(name, rdtype, Reason.LOOP, self.active_servers(), f"more than {MAX_CNAME_LINKS} CNAMEs")

    def _ask(self, name: str, rdtype: str) -> tuple[dns.message.Message, Server]:
        """One question to the configured servers in turn, following referrals."""
        errors: list[DnsError] = []
        for server in self.active_servers():
            try:
                return self._ask_following(name, rdtype, server)
            except DnsError as err:
                errors.append(err)
        if not errors:
            raise DnsError(name, rdtype, Reason.UNREACHABLE, (), "no name server configured")
        last = errors[-1]
        servers = [s for err in errors for s in err.servers]
        raise DnsError(name, rdtype, last.reason, servers, last.detail)

    def _ask_following(self, name: str, rdtype: str, server: Server) -> tuple[dns.message.Message, Server]:
        seen: set[Server] = set()
        for _ in range(MAX_REFERRALS):
            seen.add(server)
            response = self._exchange(name, rdtype, server)
            glue = _referral_glue(response)
            if glue is None:
                return response, server
            next_servers = [Server(a, server.port) for a in glue if Server(a, server.port) not in seen]
            if not next_servers:
                raise DnsError(name, rdtype, Reason.LOOP, (server,), "referral without usable glue")
            server = next_servers[0]
        raise DnsError(name, rdtype, Reason.LOOP, (server,), f"more than {MAX_REFERRALS} referrals")

    def _exchange(self, name: str, rdtype: str, server: Server) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        try:
            response = dns.query.udp(query, server.address, timeout=self.timeout, port=server.port)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, server.address, timeout=self.timeout, port=server.port)
        except dns.exception.Timeout as err:
            raise DnsError(name, rdtype, Reason.TIMEOUT, (server,), f"no answer within {self.timeout:g}s") from err
        except OSError as err:
            raise DnsError(name, rdtype, Reason.UNREACHABLE, (server,), err.strerror or str(err)) from err
        except dns.exception.DNSException as err:
            raise DnsError(name, rdtype, Reason.MALFORMED, (server,), str(err)) from err
        rcode = response.rcode()
        if rcode == dns.rcode.SERVFAIL:
            raise DnsError(name, rdtype, Reason.SERVFAIL, (server,))
        if rcode == dns.rcode.REFUSED:
            raise DnsError(name, rdtype, Reason.REFUSED, (server,))
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsError(name, rdtype, Reason.RCODE, (server,), dns.rcode.to_text(rcode))
        return response


def _extract(
    response: dns.message.Message, name: str, rdtype: str, follow: bool
) -> tuple[list[dns.rdata.Rdata], list[str], int]:
    """Records for name/rdtype in an answer section, following the CNAMEs it contains."""
    wanted = dns.rdatatype.from_text(rdtype)
    current = dns.name.from_text(name)
    links: list[str] = []
    for _ in range(MAX_CNAME_LINKS + 1):
        rrset = next((r for r in response.answer if r.name == current and r.rdtype == wanted), None)
        if rrset is not None:
            return list(rrset), links, rrset.ttl
        cname = next((r for r in response.answer if r.name == current and r.rdtype == dns.rdatatype.CNAME), None)
        if cname is None:
            return [], links, 0
        target = next(iter(cname)).target
        links.append(_host(target))
        if not follow:  # the name is an alias: say so (Answer.cnames), without following
            return [], links, 0
        current = target
    return [], links, 0


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
