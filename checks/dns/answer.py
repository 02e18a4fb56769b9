"""The values DNS gives the checks: servers, typed answers and typed errors.

The checks must tell "no such record" (a fact to judge) from "could not ask" (timeout,
SERVFAIL, REFUSED: undecidable), and must name the server that failed. So a question
yields an ``Answer`` (records, CNAME chain, NXDOMAIN flag) or raises ``DnsError`` —
never a sentinel string, never a half answer. These are plain values: the resolvers
(``mailstack.checks.dns.aresolver``, and its blocking face ``resolver``) make them,
the checks and probes read them, and fixtures build them by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.name
import dns.rdata

from mailstack.checks.defaults import DEFAULT_TIMEOUT
from mailstack.core import names, txt
from mailstack.core.errors import MailstackError



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

    def copy(self) -> DnsError:
        """A fresh exception with the same content: a cached error is raised as a copy
        each time, so concurrent askers never share (and grow) one traceback."""
        return DnsError(self.name, self.rdtype, self.reason, self.servers, self.detail)


@dataclass(frozen=True, slots=True)
class Answer:
    """The records of one name and type, after following CNAMEs.

    ``records`` is empty for NODATA and NXDOMAIN (``nxdomain`` tells them apart);
    ``cnames`` lists the names the query was redirected through, first the queried
    name's own target. ``void`` is RFC 7208's "void lookup": nothing came back.
    With ``dnssec`` asked (the DO bit), ``signatures`` holds the RRSIGs covering the
    records and ``authenticated`` the server's AD flag (meaningful only from a
    validating resolver one trusts the path to).
    """

    name: str
    rdtype: str
    records: tuple[dns.rdata.Rdata, ...]
    cnames: tuple[str, ...] = ()
    nxdomain: bool = False
    ttl: int = 0
    server: str = ""
    signatures: tuple[dns.rdata.Rdata, ...] = ()
    authenticated: bool = False

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
        pairs = [(int(r.preference), host(r.exchange)) for r in self.records]  # type: ignore[attr-defined]
        return tuple(sorted(pairs))

    def targets(self) -> tuple[str, ...]:
        """CNAME/PTR/NS targets without the trailing dot."""
        return tuple(host(r.target) for r in self.records)  # type: ignore[attr-defined]


def host(name: dns.name.Name) -> str:
    """A name from an answer as the checks compare names: normalised, no trailing dot
    (``"."`` for the root, a null MX's target)."""
    text = name.to_text()
    return "." if text == "." else names.normalize(text)
