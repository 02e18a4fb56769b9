"""RFC 2136 on the wire: TSIG-signed zone transfers and guarded updates.

The Pulumi provider (``mailstack.providers.rfc2136``) and the lab both go through here, so
the rules live once: every message is signed with TSIG (RFC 8945), every update carries
the prerequisites (RFC 2136 §2.4) that make it apply only to the zone as it was read
(``mailstack.rfc2136.apply`` builds them), and every server answer other than success
becomes a ProviderError that says what went wrong and what to do — never the secret.
Clients are built per call: nothing happens at import time, nothing is cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr

from mailstack.core import names, txt, zonefile
from mailstack.core.errors import ProviderError
from mailstack.core.record import Record

#: Record types the provider manages (what the record plan produces, plus PTR/NS).
TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "PTR", "NS", "SRV", "CAA")
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    """Where updates go and how they are signed. ``repr`` hides the secret."""

    address: str
    port: int
    key_name: str
    algorithm: str
    secret: str
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"Server({self.address}:{self.port}, key {self.key_name}/{self.algorithm})"

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """The dnspython keyring for this key (built per call, never cached)."""
        return dns.tsigkeyring.from_text({self.key_name: (self.algorithm, self.secret)})

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


def _rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text, origin=dns.name.root, relativize=False)


def canonical(rdtype: str, text: str) -> str:
    """The one presentation form of a value, so values compare equal however written.

    Names become absolute, and a TXT value is joined and re-split at 255 bytes with
    ``mailstack.core.txt`` (``"a" "b"`` and ``"ab"`` are the same value to SPF/DKIM/DMARC).
    Raises ValueError for a value dnspython cannot parse as that type.
    """
    try:
        rdata = _rdata(rdtype, text)
    except (dns.exception.DNSException, ValueError) as err:
        raise ValueError(f"{text!r} is not a valid {rdtype} value: {err}") from err
    return _canonical_rdata(rdata)


def _canonical_rdata(rdata: dns.rdata.Rdata) -> str:
    if rdata.rdtype == dns.rdatatype.TXT:
        strings = getattr(rdata, "strings")
        return txt.quoted(txt.from_wire(strings))
    return str(rdata.to_text())


def canonical_values(rdtype: str, values: Iterable[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated and sorted: a record set is a set (RFC 2181 §5)."""
    return tuple(sorted({canonical(rdtype, v) for v in values}))


def _name(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


# -- reading: a zone transfer ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneSnapshot:
    """A zone exactly as the primary served it in one transfer (AXFR, RFC 5936).

    The exact rdata is kept, not only ``Record`` values: RFC 2136 prerequisites and
    deletes match rdata on the wire, and a foreign TXT split at other boundaries than
    ours must be named exactly as it is. ``records`` gives the same data as Records
    (TXT joined, names without trailing dot) for the change calculator.
    """

    zone: str
    serial: int
    #: (name, type) → (TTL, rdata in the order served), every set of the zone.
    rrsets: Mapping[tuple[str, str], tuple[int, tuple[dns.rdata.Rdata, ...]]]

    def records(self) -> dict[str, tuple[Record, ...]]:
        """Every record of the zone as Records, by name."""
        found: dict[str, list[Record]] = {}
        for (name, _), (ttl, rdatas) in sorted(self.rrsets.items()):
            found.setdefault(name, []).extend(zonefile.from_rdata(name, ttl, rdata) for rdata in rdatas)
        return {name: tuple(records) for name, records in found.items()}

    def rdataset(self, name: str, rdtype: str, ttl: int | None = None) -> dns.rdataset.Rdataset | None:
        """The live set as an rdataset (``ttl`` overrides: prerequisites need 0), None when absent."""
        entry = self.rrsets.get((name, rdtype))
        if entry is None:
            return None
        return dns.rdataset.from_rdata_list(entry[0] if ttl is None else ttl, list(entry[1]))

    def rdata_of(self, record: Record) -> dns.rdata.Rdata | None:
        """The live rdata that ``record`` was read from (same value, any TXT split)."""
        entry = self.rrsets.get((record.name, record.type))
        for rdata in entry[1] if entry else ():
            live = zonefile.from_rdata(record.name, record.ttl, rdata)
            if (live.content, live.priority) == (record.content, record.priority):
                return rdata
        return None

    def names(self) -> set[str]:
        return {name for name, _ in self.rrsets}


def transfer(server: Server, zone: str) -> ZoneSnapshot:
    """Every record of ``zone``, by a TSIG-signed AXFR over TCP from the primary.

    A transfer (not one query per name) because answers to queries may be synthesised
    from a wildcard (RFC 4592) and would look like records at the name; the zone's own
    data has no such ambiguity, and one request reads every name the plan touches.
    """
    origin = _name(zone)
    action = f"read zone {zone} (AXFR)"
    try:
        messages = dns.query.xfr(
            server.address, origin, port=server.port, timeout=server.timeout, lifetime=server.timeout * 3,
            keyring=server.keyring(), keyname=server.key_name, keyalgorithm=server.algorithm, relativize=False,
        )
        rrsets: dict[tuple[str, str], tuple[int, list[dns.rdata.Rdata]]] = {}
        serial = 0
        for message in messages:
            for rrset in message.answer:
                key = (names.normalize(rrset.name.to_text()), dns.rdatatype.to_text(rrset.rdtype))
                if rrset.rdtype == dns.rdatatype.SOA:
                    serial = int(getattr(rrset[0], "serial"))
                ttl, rdatas = rrsets.setdefault(key, (rrset.ttl, []))
                rdatas.extend(r for r in rrset if r not in rdatas)
    except dns.xfr.TransferError as err:
        raise ProviderError(_transfer_refused(server, zone, err.rcode)) from err
    except (dns.exception.FormError, EOFError) as err:
        raise ProviderError(f"{action} at {server.where}: the transfer broke off ({err})") from err
    except dns.exception.DNSException as err:
        raise ProviderError(_exchange_error(server, action, err)) from err
    except (ConnectionError, OSError) as err:
        raise ProviderError(f"{action}: cannot reach {server.where} over TCP: {err.strerror or err}") from err
    return ZoneSnapshot(names.normalize(zone), serial, {k: (ttl, tuple(r)) for k, (ttl, r) in rrsets.items()})


def _transfer_refused(server: Server, zone: str, rcode: dns.rcode.Rcode) -> str:
    if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
        return (
            f"read zone {zone} at {server.where}: the server refused the zone transfer ({dns.rcode.to_text(rcode)}): "
            f"mailstack reads the whole zone before changing it; allow key {server.key_name} to transfer it "
            f'(BIND: allow-transfer {{ key "{server.key_name}"; }};), or point mailstack:dns.server at the zone\'s primary'
        )
    return _rcode_message(rcode, server, f"read zone {zone}", zone=zone)


# -- writing: one guarded update -------------------------------------------------------


def message(server: Server, zone: str) -> dns.update.UpdateMessage:
    """An empty update for ``zone``, signed with the server's key."""
    return dns.update.UpdateMessage(
        _name(zone), keyring=server.keyring(), keyname=_name(server.key_name), keyalgorithm=server.algorithm
    )


def send(server: Server, update: dns.message.Message, zone: str, action: str) -> None:
    """Send one update; any answer but NOERROR is a ProviderError saying what to do."""
    response = _exchange(server, update, action)
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise ProviderError(_rcode_message(rcode, server, action, zone=zone))


def _exchange(server: Server, message: dns.message.Message, action: str) -> dns.message.Message:
    """One TCP exchange; transport and TSIG failures become ProviderErrors."""
    try:
        return dns.query.tcp(message, server.address, timeout=server.timeout, port=server.port)
    except EOFError as err:
        raise ProviderError(
            f"{action}: {server.where} closed the connection before answering: the update may or may not have "
            "been applied; run again — the next run reads the zone and writes only what is missing, never twice"
        ) from err
    except dns.exception.DNSException as err:
        raise ProviderError(_exchange_error(server, action, err)) from err
    except (ConnectionError, OSError) as err:
        raise ProviderError(f"{action}: cannot reach {server.where} over TCP: {err.strerror or err}") from err


def _exchange_error(server: Server, action: str, err: dns.exception.DNSException) -> str:
    """What a transport or TSIG failure means, never with the secret."""
    if isinstance(err, dns.exception.Timeout):
        return f"{action}: no answer from {server.where} within {server.timeout:g}s"
    if isinstance(err, dns.tsig.PeerBadKey):
        return (
            f"{action}: {server.where} does not know TSIG key {server.key_name} ({server.algorithm}) (BADKEY): "
            "check mailstack:dns.tsigKeyName and tsigAlgorithm against the server's key statement"
        )
    if isinstance(err, dns.tsig.PeerBadSignature):
        return (
            f"{action}: {server.where} rejected the signature of TSIG key {server.key_name} (BADSIG): "
            "mailstack:tsigSecret does not match the server's secret for that key"
        )
    if isinstance(err, dns.tsig.PeerBadTime):
        return f"{action}: {server.where} rejected the TSIG time (BADTIME): check both clocks"
    if isinstance(err, (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.PeerError)):
        return f"{action}: TSIG verification with {server.where} failed ({type(err).__name__})"
    return f"{action}: bad answer from {server.where}: {err}"


_RCODE_HELP: dict[dns.rcode.Rcode, str] = {
    dns.rcode.REFUSED: "the server refused the change (REFUSED): it is not authoritative for {zone} or its "
    "update policy does not allow key {key} (allow-update / update-policy), or the change "
    "breaks a zone integrity rule (e.g. an MX target in the zone without an address record)",
    dns.rcode.NOTAUTH: "the server is not authoritative for {zone}, or did not accept key {key} "
    "(NOTAUTH; a wrong TSIG secret, name or algorithm also gives this)",
    dns.rcode.NOTZONE: "a name is outside zone {zone} (NOTZONE): check mailstack:dns.zone and aliasZones",
    dns.rcode.YXRRSET: "zone {zone} changed between mailstack reading it and writing (YXRRSET: a record set "
    "appeared); nothing of this update was written — run again to plan against what is there now",
    dns.rcode.NXRRSET: "zone {zone} changed between mailstack reading it and writing (NXRRSET: a record set "
    "no longer holds what was read); nothing of this update was written — run again to plan against what is there now",
    dns.rcode.YXDOMAIN: "zone {zone} changed between mailstack reading it and writing (YXDOMAIN: a name came "
    "into use); nothing of this update was written — run again",
    dns.rcode.NXDOMAIN: "a required name does not exist (NXDOMAIN); nothing of this update was written",
    dns.rcode.SERVFAIL: "the server failed (SERVFAIL): see its log (journal, zone file permissions)",
    dns.rcode.NOTIMP: "the server does not implement dynamic updates (NOTIMP)",
    dns.rcode.FORMERR: "the server could not parse the update (FORMERR)",
}


def _rcode_message(rcode: dns.rcode.Rcode, server: Server, action: str, *, zone: str | None) -> str:
    name = dns.rcode.to_text(rcode)
    help_text = _RCODE_HELP.get(rcode, "the server answered {rcode}")
    return f"{action} at {server.where}: " + help_text.format(
        zone=zone or "the zone", key=server.key_name, rcode=name
    )


def describe(values: Sequence[str]) -> str:
    """Values for a message, shortened (a DKIM key is long)."""
    shown = [v if len(v) <= 60 else v[:57] + "..." for v in values]
    return ", ".join(shown) or "(none)"
