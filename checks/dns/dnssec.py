"""DNSSEC validation of one RRset from a trust anchor, through the run's resolver.

From the closest trust anchor above the name (DS or DNSKEY records in zone-file
syntax, as unbound's ``trust-anchor-file`` takes them — the root's by default) down
to the RRset: at each zone cut the DS RRset is verified with the parent's keys, the
child's DNSKEY RRset must be signed by a key that DS matches, then the RRset itself
(or its NODATA/NXDOMAIN proof) is verified with the zone's keys. Every question goes
through the run's ``AsyncResolver.message`` (DO and CD set, cached per run), so a
validating resolver hands over bogus data and the outcome can say why.

Outcomes keep RFC 4035 §4.3's four states apart, because the checks map them to
different verdicts: ``secure``; ``insecure`` (a *proven* absence of DS: unsigned, a
warning); ``bogus`` (evidence that does not validate: fail); ``indeterminate`` (timeout,
SERVFAIL, REFUSED, EDNS stripped, no anchor above the name: the check could not
complete, error — never reported as broken).

An alias is followed (RFC 4035 §5.3.3): the CNAME RRset is validated in its zone —
or the DNAME RRset, and the CNAME it synthesizes must match it (RFC 6672 §5.3.3) —
then the target from *its* trust chain, up to ``MAX_CHAIN`` links. The outcome is the
weakest link: bogus when one is bogus, insecure when one is provably unsigned, secure
only when every link is; a loop or a longer chain is indeterminate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zonefile

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.dnssec_proofs import (
    CNAME,
    DNAME,
    DNSKEY,
    DS,
    Bogus,
    Insecure,
    entry_keys,
    nsec3_advice,
    prove_expansion,
    prove_nodata,
    prove_nxdomain,
    section_rrset,
    supported_ds,
    verify,
)
from mailstack.core.errors import MailstackError

SOA = dns.rdatatype.SOA
#: Aliases followed for one answer (resolvers bound CNAME chains alike: BIND and
#: Unbound stop after 8-16 links); more, or a loop, is indeterminate.
MAX_CHAIN = 8
#: The root's trust anchor as Debian's dns-root-data ships it (DS, zone-file syntax),
#: then the DNSKEY form; ``--trust-anchor FILE`` replaces it.
SYSTEM_ANCHORS = (Path("/usr/share/dns/root.ds"), Path("/usr/share/dns/root.key"))


class Status(StrEnum):
    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"
    INDETERMINATE = "indeterminate"


@dataclass
class Outcome:
    """What validating one name and type showed; ``trail`` is the chain walked,
    ``expires`` the earliest expiration of the signatures relied on."""

    name: str
    rdtype: str
    status: Status = Status.INDETERMINATE
    reason: str = ""
    records: tuple[dns.rdata.Rdata, ...] = ()
    trail: list[str] = field(default_factory=list)
    #: The zone whose DS is absent (insecure), or the last zone validated.
    zone: str = ""
    expires: int | None = None
    #: Advice that does not change the status (NSEC3 parameters, unsupported algorithms).
    notes: list[str] = field(default_factory=list)


class Indeterminate(Exception):
    """The validation could not complete (DNS error, no anchor)."""


@dataclass(frozen=True, slots=True)
class Anchor:
    zone: dns.name.Name
    ds: tuple[dns.rdata.Rdata, ...] = ()
    dnskey: tuple[dns.rdata.Rdata, ...] = ()


Anchors = Mapping[dns.name.Name, Anchor]


class AnchorError(MailstackError):
    """A trust-anchor file that cannot be read or holds something else than DS/DNSKEY."""


def parse_anchors(text: str, source: str = "trust anchor") -> dict[dns.name.Name, Anchor]:
    """DS and/or DNSKEY records in zone-file syntax (absolute owners, TTL optional).

    ``rdclass=None`` lets a line carry ``IN`` (read_rrsets' default forbids it)."""
    try:
        rrsets = dns.zonefile.read_rrsets(text, rdclass=None, default_ttl=0, origin=dns.name.root, relativize=False)
    except (dns.exception.DNSException, ValueError) as err:
        raise AnchorError(f"{source}: not DS/DNSKEY records in zone-file syntax: {err}") from err
    found: dict[dns.name.Name, tuple[list[dns.rdata.Rdata], list[dns.rdata.Rdata]]] = {}
    for rrset in rrsets:
        ds, keys = found.setdefault(rrset.name, ([], []))
        if rrset.rdtype == DS:
            ds.extend(rrset)
        elif rrset.rdtype == DNSKEY:
            keys.extend(rrset)
        else:
            raise AnchorError(f"{source}: {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} is not a DS or DNSKEY record")
    if not found:
        raise AnchorError(f"{source}: holds no DS or DNSKEY record")
    return {name: Anchor(name, tuple(ds), tuple(keys)) for name, (ds, keys) in found.items()}


def load_anchors(path: Path | None = None) -> dict[dns.name.Name, Anchor]:
    """The anchors of ``path``, or the system's root anchor when None."""
    candidates = (path,) if path is not None else SYSTEM_ANCHORS
    for candidate in candidates:
        try:
            text = candidate.read_text(encoding="ascii")
        except FileNotFoundError:
            if path is not None:
                raise AnchorError(f"trust anchor file {candidate} does not exist") from None
            continue
        except (OSError, UnicodeDecodeError) as err:
            raise AnchorError(f"trust anchor file {candidate}: {err}") from err
        return parse_anchors(text, str(candidate))
    raise AnchorError(f"no system trust anchor ({', '.join(map(str, SYSTEM_ANCHORS))}; Debian package dns-root-data); pass --trust-anchor FILE")


async def _ask(resolver: AsyncResolver, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    try:
        response = await resolver.message(name.to_text(), dns.rdatatype.to_text(rdtype))
    except DnsError as err:
        raise Indeterminate(str(err)) from err
    if response.answer and not response.ednsflags & dns.flags.DO:
        raise Indeterminate(f"{name} {dns.rdatatype.to_text(rdtype)}: answer without the DO bit (EDNS stripped on the path?)")
    return response


async def _zone_keys(resolver: AsyncResolver, zone: dns.name.Name, ds: tuple[dns.rdata.Rdata, ...], anchor: tuple[dns.rdata.Rdata, ...], out: Outcome) -> dns.rdataset.Rdataset:
    """The zone's DNSKEY RRset once a DS-matched (or anchor) key signs it."""
    response = await _ask(resolver, zone, DNSKEY)
    dnskeys, sigs = section_rrset(response.answer, zone, DNSKEY)
    if dnskeys is None:
        raise Bogus(f"{zone} DNSKEY: none served, but there is a DS (or an anchor) for the zone")
    entry = entry_keys(zone, dnskeys, ds, anchor)
    _expiring(out, verify(dnskeys, sigs, dns.rdataset.from_rdata_list(dnskeys.ttl, entry), zone))
    tags = ", ".join(str(dns.dnssec.key_id(k)) for k in entry)  # type: ignore[arg-type]
    out.trail.append(f"{zone} DNSKEY ok (entry key {tags}, {len(dnskeys)} keys)")
    return dnskeys


def _expiring(out: Outcome, sig: Any) -> None:
    """Keep the earliest expiration of the signatures relied on (``sig``: a verified RRSIG)."""
    out.expires = int(sig.expiration) if out.expires is None else min(out.expires, int(sig.expiration))


def _signed(out: Outcome, response: dns.message.Message, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, zone: dns.name.Name, keys: dns.rdataset.Rdataset) -> str:
    """Verify an answer RRset; one expanded from a wildcard (the RRSIG's labels field
    is less than the owner's) also needs its no-closer-match proof."""
    sig = verify(rrset, sigs, keys, zone)
    _expiring(out, sig)
    owner_labels = len(rrset.name) - 1 - (rrset.name.labels[0] == b"*")
    if sig.labels < owner_labels:
        _advise(out, response)
        return f" ({prove_expansion(response, rrset.name, sig.labels, zone, keys)})"
    return ""


async def validate(resolver: AsyncResolver, anchors: Anchors, name: str, rdtype: str) -> Outcome:
    """Validate ``name``/``rdtype`` from the closest anchor above it, following aliases."""
    out = Outcome(name, rdtype)
    qname, qtype = dns.name.from_text(name), dns.rdatatype.from_text(rdtype)
    chain = [qname]
    unsigned: tuple[str, str] | None = None
    try:
        while True:
            out.status = Status.INDETERMINATE
            target = await _walk(resolver, anchors, qname, qtype, out)
            if out.status is Status.INSECURE and unsigned is None:
                unsigned = (out.reason, out.zone)
            if target is None:
                break
            if target in chain:
                raise Indeterminate(f"alias loop: {' -> '.join(map(str, [*chain, target]))}")
            if len(chain) > MAX_CHAIN:
                raise Indeterminate(f"alias chain longer than {MAX_CHAIN} links from {name}")
            chain.append(target)
            qname = target
        if unsigned is not None:
            out.status, (out.reason, out.zone) = Status.INSECURE, unsigned
        if len(chain) > 1:
            out.reason = f"via {' -> '.join(map(str, chain))}: {out.reason}"
    except Insecure as exc:
        out.status, out.reason = Status.INSECURE, str(exc)
    except Bogus as exc:
        out.status, out.reason = Status.BOGUS, str(exc)
    except Indeterminate as exc:
        out.status, out.reason = Status.INDETERMINATE, str(exc)
    return out


def _advise(out: Outcome, response: dns.message.Message) -> None:
    note = nsec3_advice(response)
    if note and note not in out.notes:
        out.notes.append(note)


async def _unsigned(resolver: AsyncResolver, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, zone: dns.name.Name, reason: str, out: Outcome) -> dns.name.Name | None:
    """``qname`` lies in the unsigned ``zone``: its data as served, the alias to follow."""
    out.status, out.zone, out.reason = Status.INSECURE, zone.to_text(omit_final_dot=True), reason
    response = await _ask(resolver, qname, rdtype)
    data = section_rrset(response.answer, qname, rdtype)[0]
    out.records = tuple(data) if data else ()
    return None if data else _alias_target(response, qname)


def _alias_target(response: dns.message.Message, qname: dns.name.Name) -> dns.name.Name | None:
    """The CNAME target of ``qname`` in an answer (served or synthesized from a DNAME)."""
    cname = section_rrset(response.answer, qname, CNAME)[0]
    return cname[0].target if cname is not None else None


def validated_alias(response: dns.message.Message, qname: dns.name.Name, zone: dns.name.Name, keys: dns.rdataset.Rdataset, out: Outcome) -> dns.name.Name | None:
    """The validated alias target of ``qname`` (None when the answer holds no CNAME).

    A signed CNAME at ``qname`` is verified; an unsigned one must be synthesized from a
    signed DNAME above it in the same zone (RFC 6672 §5.3.3; RFC 4035 §5.3.4)."""
    cname, sigs = section_rrset(response.answer, qname, CNAME)
    if cname is None:
        return None
    target: dns.name.Name = cname[0].target
    if sigs is not None:
        wildcard = _signed(out, response, cname, sigs, zone, keys)
        out.trail.append(f"{qname} CNAME {target} ok (signed by {zone}){wildcard}")
        return target
    for rrset in response.answer:
        if rrset.rdtype == DNAME and qname.is_subdomain(rrset.name) and qname != rrset.name and rrset.name.is_subdomain(zone):
            _expiring(out, verify(rrset, section_rrset(response.answer, rrset.name, DNAME)[1], keys, zone))
            synthesized = qname.relativize(rrset.name).concatenate(rrset[0].target)
            if synthesized != target:
                raise Bogus(f"{qname} CNAME {target}: not what the DNAME {rrset.name} -> {rrset[0].target} synthesizes ({synthesized})")
            out.trail.append(f"{rrset.name} DNAME {rrset[0].target} ok (signed by {zone}), {qname} -> {target}")
            return target
    raise Bogus(f"{qname} CNAME {target}: no RRSIG and no signed DNAME it is synthesized from")


async def _walk(resolver: AsyncResolver, anchors: Anchors, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, out: Outcome) -> dns.name.Name | None:
    """One link: sets ``out``'s status and returns the alias target to follow, if any."""
    above = [a for a in anchors if qname.is_subdomain(a)]
    if not above:
        raise Indeterminate(f"no trust anchor above {qname} (anchors: {', '.join(map(str, anchors))})")
    anchor = anchors[max(above, key=len)]
    zone = anchor.zone
    keys = await _zone_keys(resolver, zone, anchor.ds, anchor.dnskey, out)
    # the zone cuts between the anchor and the name: an apex answers SOA with its own name
    for depth in range(len(zone) + 1, len(qname) + 1):
        candidate = dns.name.Name(qname.labels[-depth:])
        response = await _ask(resolver, candidate, SOA)
        if response.rcode() == dns.rcode.NXDOMAIN and _alias_target(response, candidate) is None:
            out.status, out.zone = Status.SECURE, zone.to_text(omit_final_dot=True)
            _advise(out, response)
            out.reason = f"NXDOMAIN proven at {candidate}: {prove_nxdomain(response, candidate, zone, keys)}"
            return None
        if section_rrset(response.answer, candidate, SOA)[0] is None:
            continue  # not an apex (an ordinary name or an empty non-terminal)
        ds_response = await _ask(resolver, candidate, DS)
        ds, ds_sigs = section_rrset(ds_response.answer, candidate, DS)
        if ds is None:
            _advise(out, ds_response)
            try:
                how = prove_nodata(ds_response, candidate, DS, zone, keys)
            except Insecure as exc:
                how = str(exc)
            out.trail.append(f"{candidate}: no DS at {zone}, proven by {how}")
            return await _unsigned(resolver, qname, rdtype, candidate, f"{candidate} is not signed: its parent {zone} proves there is no DS ({how})", out)
        _expiring(out, verify(ds, ds_sigs, keys, zone))
        out.trail.append(f"{candidate} DS ok (signed by {zone})")
        usable, notes = supported_ds(list(ds))
        if not usable:
            out.notes += notes
            return await _unsigned(resolver, qname, rdtype, candidate, f"{candidate}: no DS this validator can use ({'; '.join(notes)}): "
                                   "treated as unsigned (RFC 4035 §5.2, RFC 6840 §5.2)", out)
        keys = await _zone_keys(resolver, candidate, tuple(usable), (), out)
        zone = candidate
    out.zone = zone.to_text(omit_final_dot=True)
    response = await _ask(resolver, qname, rdtype)
    data, sigs = section_rrset(response.answer, qname, rdtype)
    if data is None:
        target = validated_alias(response, qname, zone, keys, out)
        if target is not None:
            return target
        _advise(out, response)
        how = prove_nxdomain(response, qname, zone, keys) if response.rcode() == dns.rcode.NXDOMAIN else prove_nodata(response, qname, rdtype, zone, keys)
        out.status, out.reason = Status.SECURE, f"no {dns.rdatatype.to_text(rdtype)} at {qname}, proven: {how}"
        return None
    signers = {s.signer for s in sigs} if sigs else set()
    if signers and zone not in signers:
        raise Bogus(f"{qname} {dns.rdatatype.to_text(rdtype)}: signed by {', '.join(map(str, signers))}, expected {zone}")
    wildcard = _signed(out, response, data, sigs, zone, keys)
    out.records = tuple(data)
    out.trail.append(f"{qname} {dns.rdatatype.to_text(rdtype)} ok (signed by {zone}){wildcard}")
    out.status = Status.SECURE
    out.reason = f"validated from the anchor {anchor.zone}: " + " -> ".join(out.trail)
    return None


def expires_in_days(outcome: Outcome, now: float | None = None) -> float | None:
    """Days until the first signature relied on expires."""
    if outcome.expires is None:
        return None
    return (outcome.expires - (time.time() if now is None else now)) / 86400
