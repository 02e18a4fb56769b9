"""RFC 2136 on the wire: TSIG-signed reads and guarded updates of one record set.

The Pulumi provider (``mailstack.providers.rfc2136``) and the lab both go through here, so the
rules live once: every update carries prerequisites (RFC 2136 §2.4) so that mailstack
never overwrites data it did not write, every message is signed with TSIG (RFC 8945),
and every server answer other than success becomes a ProviderError that says what went
wrong and what to do — never the secret. Clients are built per call: nothing happens
at import time and nothing is cached between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

from mailstack.core import txt
from mailstack.core.errors import ProviderError

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


@dataclass(frozen=True, slots=True)
class RecordSet:
    """One record set (name, type) with its TTL and canonical values, sorted."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]

    def rdataset(self, ttl: int | None = None) -> dns.rdataset.Rdataset:
        """The values as an rdataset; prerequisites need TTL 0 (RFC 2136 §2.4.2)."""
        return dns.rdataset.from_rdata_list(self.ttl if ttl is None else ttl, [_rdata(self.type, v) for v in self.values])


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


# -- reading -------------------------------------------------------------------------

def read(server: Server, rrset_name: str, rdtype: str) -> RecordSet | None:
    """The live record set at the server, None when absent.

    Asks over TCP with a signed query and insists on an authoritative answer, so a
    server that is not the zone's primary (or a wrong key) is an error, not "absent".
    """
    query = dns.message.make_query(_name(rrset_name), dns.rdatatype.from_text(rdtype))
    query.flags &= ~dns.flags.RD
    query.use_tsig(server.keyring(), keyname=server.key_name, algorithm=server.algorithm)
    response = _exchange(server, query, f"read {rrset_name} {rdtype}")
    rcode = response.rcode()
    if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
        raise ProviderError(
            f"read {rrset_name} {rdtype} at {server.where}: the server refused to answer "
            f"({dns.rcode.to_text(rcode)}): it does not serve that zone, or not to key {server.key_name}; "
            "point mailstack:dns.server at the zone's primary"
        )
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise ProviderError(_rcode_message(rcode, server, f"read {rrset_name} {rdtype}", zone=None))
    if not response.flags & dns.flags.AA:
        raise ProviderError(
            f"{server.where} is not authoritative for {rrset_name} (answer without the AA flag): "
            "point mailstack:dns.server at the zone's primary"
        )
    for rrset in response.answer:
        if rrset.name == _name(rrset_name) and rrset.rdtype == dns.rdatatype.from_text(rdtype):
            values = tuple(sorted({_canonical_rdata(r) for r in rrset}))
            return RecordSet(rrset_name, rdtype, rrset.ttl, values)
    return None


# -- updating ------------------------------------------------------------------------

def create(server: Server, zone: str, wanted: RecordSet) -> None:
    """Add a record set that must not exist yet (RFC 2136 "RRset does not exist").

    A CNAME needs the whole name unused ("name is not in use"); any other type needs no
    CNAME at the name, which BIND would otherwise silently keep instead of our data.
    """
    update = _message(server, zone)
    name = _name(wanted.name)
    if wanted.type == "CNAME":
        update.absent(name)
    else:
        update.absent(name, wanted.type)
        update.absent(name, "CNAME")
    update.add(name, wanted.rdataset())
    _send(server, update, zone, f"create {wanted.name} {wanted.type}")


def replace(server: Server, zone: str, old: RecordSet, new: RecordSet) -> None:
    """Replace a record set only while it still holds exactly the old values
    (RFC 2136 "RRset exists (value dependent)"); someone else's edit stops us."""
    update = _message(server, zone)
    name = _name(new.name)
    update.present(name, old.rdataset(ttl=0))
    update.delete(name, new.type)
    update.add(name, new.rdataset())
    _send(server, update, zone, f"update {new.name} {new.type}")


def delete(server: Server, zone: str, old: RecordSet) -> None:
    """Delete a record set only while it still holds exactly the values we wrote."""
    update = _message(server, zone)
    name = _name(old.name)
    update.present(name, old.rdataset(ttl=0))
    update.delete(name, old.type)
    _send(server, update, zone, f"delete {old.name} {old.type}")


def _message(server: Server, zone: str) -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(
        _name(zone), keyring=server.keyring(), keyname=_name(server.key_name), keyalgorithm=server.algorithm
    )


def _send(server: Server, message: dns.message.Message, zone: str, action: str) -> None:
    response = _exchange(server, message, action)
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise ProviderError(_rcode_message(rcode, server, action, zone=zone))


def _exchange(server: Server, message: dns.message.Message, action: str) -> dns.message.Message:
    """One TCP exchange; transport and TSIG failures become ProviderErrors."""
    try:
        return dns.query.tcp(message, server.address, timeout=server.timeout, port=server.port)
    except dns.exception.Timeout as err:
        raise ProviderError(f"{action}: no answer from {server.where} within {server.timeout:g}s") from err
    except dns.tsig.PeerBadKey as err:
        raise ProviderError(
            f"{action}: {server.where} does not know TSIG key {server.key_name} ({server.algorithm}) (BADKEY): "
            "check mailstack:dns.tsigKeyName and tsigAlgorithm against the server's key statement"
        ) from err
    except dns.tsig.PeerBadSignature as err:
        raise ProviderError(
            f"{action}: {server.where} rejected the signature of TSIG key {server.key_name} (BADSIG): "
            "mailstack:tsigSecret does not match the server's secret for that key"
        ) from err
    except dns.tsig.PeerBadTime as err:
        raise ProviderError(f"{action}: {server.where} rejected the TSIG time (BADTIME): check both clocks") from err
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.PeerError) as err:
        raise ProviderError(f"{action}: TSIG verification with {server.where} failed ({type(err).__name__})") from err
    except (ConnectionError, OSError) as err:
        raise ProviderError(f"{action}: cannot reach {server.where} over TCP: {err.strerror or err}") from err
    except dns.exception.DNSException as err:
        raise ProviderError(f"{action}: bad answer from {server.where}: {err}") from err


_RCODE_HELP: dict[dns.rcode.Rcode, str] = {
    dns.rcode.REFUSED: "the server refused the change (REFUSED): it is not authoritative for {zone} or its "
    "update policy does not allow key {key} (allow-update / update-policy), or the change "
    "breaks a zone integrity rule (e.g. an MX target in the zone without an address record)",
    dns.rcode.NOTAUTH: "the server is not authoritative for {zone}, or did not accept key {key} "
    "(NOTAUTH; a wrong TSIG secret, name or algorithm also gives this)",
    dns.rcode.NOTZONE: "a name is outside zone {zone} (NOTZONE): check mailstack:dns.zone and aliasZones",
    dns.rcode.YXRRSET: "the record set already exists with values mailstack did not write (YXRRSET); "
    "it was left untouched — remove it by hand or make the stack declare exactly those values",
    dns.rcode.NXRRSET: "the record set no longer holds the values mailstack wrote (NXRRSET): someone "
    "changed it outside mailstack; it was left untouched — run `pulumi refresh` and review",
    dns.rcode.YXDOMAIN: "the name already holds other records (YXDOMAIN): a CNAME cannot sit beside "
    "them (RFC 1034 §3.6.2); it was left untouched",
    dns.rcode.NXDOMAIN: "a required name does not exist (NXDOMAIN); nothing was changed",
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
