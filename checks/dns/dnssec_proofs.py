"""DNSSEC evidence, judged without I/O: signatures, DS-to-key matches, denial proofs.

``mailstack.checks.dns.dnssec`` walks the chain and fetches the responses; this module
says whether what came back proves anything (RFC 4035 §5, RFC 5155 §8). Every
verdict is an exception with the reason in words: ``Bogus`` (the evidence is there
and does not validate) — the walk turns it into the check's ``fail``; ``Insecure``
(it validates, but a validator does not rely on it: NSEC3 iterations above the cap,
RFC 9276 §3.2) — the check's ``warn``.

dnspython's ``dns.dnssec.validate`` says only "no RRSIGs validated"; each signature is
tried with ``validate_rrsig`` so the reason ("expired", "verify failure") survives.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any

import dns.dnssec
import dns.dnssecalgs
import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import DSDigest

DNSKEY, DS, RRSIG, NSEC, NSEC3, CNAME, DNAME = (
    dns.rdatatype.DNSKEY, dns.rdatatype.DS, dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.CNAME,
    dns.rdatatype.DNAME,
)
#: DNSKEY flags: the Zone Key bit (RFC 4034 §2.1.1).
ZONE_FLAG = 0x0100
NSEC3_OPTOUT = 0x01
#: DS digest types make_ds computes: SHA-1, SHA-256, SHA-384 (not GOST, RFC 5933).
SUPPORTED_DIGESTS = frozenset({DSDigest.SHA1, DSDigest.SHA256, DSDigest.SHA384})
#: NSEC3 iterations above this make a (validated) denial insecure, RFC 9276 §3.2.
#: BIND 9.20 caps at 50 (CVE-2026-1519: it had capped at 150, as BIND 9.18 and Unbound
#: do); RFC 9276 §3.1 says signers use 0, and lets validators pick a lower cap.
NSEC3_MAX_ITERATIONS = 50


class Bogus(Exception):
    """Evidence that does not validate (a bad or expired signature, no matching key,
    a missing denial proof)."""


class Insecure(Exception):
    """Evidence that validates but is not relied on (RFC 9276 §3.2)."""


def nsec3_params(nsec3s: Sequence[dns.rrset.RRset], qname: dns.name.Name) -> Any:
    """The (signature-checked) NSEC3 parameters of a denial; ``Insecure`` above the cap
    (the signature is checked first, RFC 9276 §3.2, so the count is the signer's)."""
    params = nsec3s[0][0]
    if params.iterations > NSEC3_MAX_ITERATIONS:
        raise Insecure(f"{qname}: the denial uses NSEC3 with {params.iterations} iterations, above the cap of "
                       f"{NSEC3_MAX_ITERATIONS} (RFC 9276 §3.2): treated as unsigned")
    return params


def nsec3_advice(response: dns.message.Message) -> str | None:
    """A note when a response's NSEC3 records use iterations or a salt (RFC 9276 §3.1: 0, none)."""
    for rrset in response.authority:
        if rrset.rdtype == NSEC3 and (rrset[0].iterations or rrset[0].salt):
            salt = rrset[0].salt.hex().upper() or "-"
            return (f"{rrset.name.parent()} signs with NSEC3 iterations {rrset[0].iterations}, salt {salt}: "
                    "RFC 9276 §3.1 says 0 iterations and no salt (BIND: nsec3param iterations 0 optout no salt-length 0)")
    return None


def supported_ds(ds_set: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """(the DS records whose algorithm and digest type dnspython can check, a note per
    other one). With none left the zone is insecure, RFC 4035 §5.2, RFC 6840 §5.2."""
    usable, notes = [], []
    for ds in ds_set:
        try:
            dns.dnssecalgs.get_algorithm_cls(ds.algorithm)
        except dns.exception.DNSException:
            notes.append(f"DS {ds.key_tag}: algorithm {dns.dnssec.algorithm_to_text(ds.algorithm)} ({int(ds.algorithm)}) is not supported")
            continue
        if ds.digest_type not in SUPPORTED_DIGESTS:
            notes.append(f"DS {ds.key_tag}: digest type {ds.digest_type} is not supported")
            continue
        usable.append(ds)
    return usable, notes


def section_rrset(section: Sequence[dns.rrset.RRset], name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]:
    """(the RRset of ``name``/``rdtype``, the RRSIG RRset covering it) in one section."""
    data = sigs = None
    for rrset in section:
        if rrset.name != name:
            continue
        if rrset.rdtype == rdtype:
            data = rrset
        elif rrset.rdtype == RRSIG and rrset.covers == rdtype:
            sigs = rrset
    return data, sigs


def _when(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp))


def verify(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, keys: dns.rdataset.Rdataset, zone: dns.name.Name) -> Any:
    """At least one RRSIG by ``zone`` over ``rrset`` verifies with ``keys``; returns
    that signature (its expiration and labels field count)."""
    what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
    if sigs is None or len(sigs) == 0:
        raise Bogus(f"{what}: no RRSIG")
    reasons: list[str] = []
    for sig in sigs:
        if sig.signer != zone:
            reasons.append(f"RRSIG by {sig.signer}, expected {zone}")
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {zone: keys})
        except dns.exception.DNSException as exc:  # ValidationFailure, UnsupportedAlgorithm
            extra = f" (expired {_when(sig.expiration)})" if str(exc) == "expired" else ""
            reasons.append(f"key {sig.key_tag} alg {sig.algorithm}: {exc}{extra}")
            continue
        return sig
    raise Bogus(f"{what}: " + "; ".join(reasons))


def entry_keys(zone: dns.name.Name, dnskeys: dns.rrset.RRset, ds_set: Sequence[Any], anchor_keys: Sequence[dns.rdata.Rdata]) -> list[dns.rdata.Rdata]:
    """The zone keys of ``dnskeys`` equal to an anchor DNSKEY or matching a DS.

    ``make_ds(validating=True)``: the default policy refuses to *create* SHA-1 DS
    records but allows checking one (dnspython 2.6 and later)."""
    entry: list[dns.rdata.Rdata] = []
    notes: list[str] = []
    for key in dnskeys:
        if not key.flags & ZONE_FLAG or key.protocol != 3:
            continue
        if any(key == anchor for anchor in anchor_keys):
            entry.append(key)
            continue
        for ds in ds_set:
            if ds.key_tag != dns.dnssec.key_id(key) or ds.algorithm != key.algorithm:
                continue
            try:
                if dns.dnssec.make_ds(zone, key, ds.digest_type, validating=True) == ds:
                    entry.append(key)
                else:
                    notes.append(f"DS {ds.key_tag} digest differs from DNSKEY {ds.key_tag}")
            except dns.exception.DNSException as exc:  # UnsupportedAlgorithm, DeniedByPolicy
                notes.append(f"DS digest type {ds.digest_type}: {type(exc).__name__}")
    if not entry:
        have = ", ".join(f"{dns.dnssec.key_id(k)}/{k.algorithm}" for k in dnskeys)
        want = ", ".join(f"{ds.key_tag}/{ds.algorithm}" for ds in ds_set) or "the anchor DNSKEY"
        raise Bogus(f"{zone} DNSKEY: no key matches the DS/anchor (DS {want}; DNSKEYs {have}) {'; '.join(notes)}".strip())
    return entry


def bitmap_types(rdata: Any) -> set[int]:
    """Types in an NSEC/NSEC3 type bitmap (``windows``: (window, bytes) pairs)."""
    types: set[int] = set()
    for window, bitmap in rdata.windows:
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + index * 8 + bit)
    return types


def _owner_hash(name: dns.name.Name) -> str:
    return name.labels[0].decode().upper()


def _next_hash(rdata: Any) -> str:
    return base64.b32hexencode(rdata.next).decode().upper()


def _covers(owner: dns.name.Name | str, following: dns.name.Name | str, target: dns.name.Name | str) -> bool:
    """owner < target < following on a ring (the last record's next is the first)."""
    if owner < following:
        return owner < target < following
    return target > owner or target < following


def _types(types: set[int]) -> str:
    return " ".join(dns.rdatatype.to_text(dns.rdatatype.RdataType(t)) for t in sorted(types)) or "-"


def _verified(response: dns.message.Message, rdtype: dns.rdatatype.RdataType, zone: dns.name.Name, keys: dns.rdataset.Rdataset) -> list[dns.rrset.RRset]:
    """The signed NSEC or NSEC3 RRsets of the authority section (each RRSIG checked)."""
    found = []
    for rrset in response.authority:
        if rrset.rdtype == rdtype:
            verify(rrset, section_rrset(response.authority, rrset.name, rdtype)[1], keys, zone)
            found.append(rrset)
    return found


def _without(rrset: dns.rrset.RRset, rdtype: int, problem: str) -> set[int]:
    """The types an NSEC/NSEC3 bitmap lists, Bogus (``problem``) when they include
    ``rdtype`` or CNAME: a NODATA proof must show the name lacks both."""
    types = bitmap_types(rrset[0])
    if rdtype in types or CNAME in types:
        raise Bogus(problem)
    return types


def prove_nodata(response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, zone: dns.name.Name, keys: dns.rdataset.Rdataset) -> str:
    """The name exists without ``rdtype``: a signed NSEC/NSEC3 at ``qname`` whose
    bitmap lacks the type (and CNAME); or the name is covered and its wildcard lacks
    the type (wildcard NODATA, RFC 4035 §3.1.3.4, RFC 5155 §8.7); for DS, the closest
    encloser and an NSEC3 opt-out span covering the next closer name (§8.6)."""
    what = f"{qname} {dns.rdatatype.to_text(rdtype)}"
    nsecs = _verified(response, NSEC, zone, keys)
    for rrset in nsecs:
        if rrset.name == qname:
            types = _without(rrset, rdtype, f"{what}: NODATA, but the NSEC bitmap lists the type")
            return f"NSEC at {qname} types: {_types(types)}"
    cover = next((r for r in nsecs if _covers(r.name, r[0].next, qname)), None)
    if cover is not None:
        wildcard = _nsec_wildcard(qname, cover)
        for rrset in nsecs:
            if rrset.name == wildcard:
                types = _without(rrset, rdtype, f"{what}: wildcard NODATA, but the NSEC bitmap of {wildcard} lists the type")
                return f"NSEC {cover.name} -> {cover[0].next} covers it; the wildcard {wildcard} has types: {_types(types)}"
    nsec3s = _verified(response, NSEC3, zone, keys)
    if nsec3s:
        params = nsec3_params(nsec3s, qname)
        digest = dns.dnssec.nsec3_hash(qname, params.salt, params.iterations, params.algorithm)
        for rrset in nsec3s:
            if _owner_hash(rrset.name) == digest and rrset.name.parent() == zone:
                types = _without(rrset, rdtype, f"{what}: NODATA, but the NSEC3 bitmap lists the type")
                return f"NSEC3 {digest} (hash of {qname}) types: {_types(types)}"
        if rdtype == DS:  # an insecure delegation in an opt-out span (RFC 5155 §8.6)
            encloser, next_closer = _closest_encloser(nsec3s, params, qname, zone)
            hashed = _nsec3_hash(params, next_closer)
            for rrset in nsec3s:
                if rrset[0].flags & NSEC3_OPTOUT and _covers(_owner_hash(rrset.name), _next_hash(rrset[0]), hashed):
                    return f"NSEC3 closest encloser {encloser}, next closer {next_closer} in the opt-out span {_owner_hash(rrset.name)}"
            raise Bogus(f"{what}: no NSEC3 opt-out span covers the next closer name {next_closer}")
        encloser, next_closer = _closest_encloser(nsec3s, params, qname, zone)
        wildcard = dns.name.Name((b"*",) + encloser.labels)
        for rrset in nsec3s:
            if _owner_hash(rrset.name) == _nsec3_hash(params, wildcard):
                types = _without(rrset, rdtype, f"{what}: wildcard NODATA, but the NSEC3 bitmap of {wildcard} lists the type")
                return f"NSEC3 closest encloser {encloser}, next closer {next_closer} covered; the wildcard {wildcard} has types: {_types(types)}"
    raise Bogus(f"{what}: NODATA without a matching signed NSEC/NSEC3")


def prove_nxdomain(response: dns.message.Message, qname: dns.name.Name, zone: dns.name.Name, keys: dns.rdataset.Rdataset) -> str:
    """NXDOMAIN: an NSEC covering the name and one denying the wildcard at the
    closest encloser, or the NSEC3 closest-encloser proof (RFC 5155 §8.4)."""
    nsecs = _verified(response, NSEC, zone, keys)
    if nsecs:
        cover = next((r for r in nsecs if _covers(r.name, r[0].next, qname)), None)
        if cover is None:
            raise Bogus(f"{qname}: NXDOMAIN, no NSEC covers the name")
        wildcard = _nsec_wildcard(qname, cover)
        if not any(_covers(r.name, r[0].next, wildcard) for r in nsecs):
            raise Bogus(f"{qname}: NXDOMAIN, wildcard {wildcard} not denied")
        return f"NSEC {cover.name} -> {cover[0].next} covers it; {wildcard} denied"
    nsec3s = _verified(response, NSEC3, zone, keys)
    if not nsec3s:
        raise Bogus(f"{qname}: NXDOMAIN without signed NSEC/NSEC3")
    params = nsec3_params(nsec3s, qname)
    candidate, next_closer = _closest_encloser(nsec3s, params, qname, zone)
    wildcard = dns.name.Name((b"*",) + candidate.labels)
    if not _nsec3_covers(nsec3s, params, wildcard):
        raise Bogus(f"{qname}: NXDOMAIN, wildcard {wildcard} not denied")
    return f"NSEC3 closest encloser {candidate}, next closer {next_closer} and {wildcard} covered"


def _nsec_wildcard(qname: dns.name.Name, cover: dns.rrset.RRset) -> dns.name.Name:
    """The wildcard at the closest encloser an NSEC covering ``qname`` implies: the
    longest common suffix of the name and the NSEC's ends (RFC 4035 §5.4)."""
    shared = max(qname.fullcompare(cover.name)[2], qname.fullcompare(cover[0].next)[2])
    encloser = dns.name.Name(qname.labels[-shared:]) if shared else dns.name.root
    return dns.name.Name((b"*",) + encloser.labels)


def _nsec3_hash(params: Any, name: dns.name.Name) -> str:
    return str(dns.dnssec.nsec3_hash(name, params.salt, params.iterations, params.algorithm))


def _nsec3_covers(nsec3s: Sequence[dns.rrset.RRset], params: Any, name: dns.name.Name) -> bool:
    digest = _nsec3_hash(params, name)
    return any(_covers(_owner_hash(r.name), _next_hash(r[0]), digest) for r in nsec3s)


def _closest_encloser(nsec3s: Sequence[dns.rrset.RRset], params: Any, qname: dns.name.Name, zone: dns.name.Name) -> tuple[dns.name.Name, dns.name.Name]:
    """(closest encloser, next closer name) of the closest provable encloser proof
    (RFC 5155 §8.3): an NSEC3 matches the encloser, another covers the next closer."""
    owners = {_owner_hash(r.name) for r in nsec3s}
    candidate, next_closer = qname, None
    while len(candidate) >= len(zone):
        if _nsec3_hash(params, candidate) in owners:
            break
        next_closer, candidate = candidate, candidate.parent()
    else:
        raise Bogus(f"{qname}: no NSEC3 matches a closest encloser")
    if next_closer is None:
        raise Bogus(f"{qname}: an NSEC3 matches the name itself")
    if not _nsec3_covers(nsec3s, params, next_closer):
        raise Bogus(f"{qname}: next closer name {next_closer} not covered by an NSEC3")
    return candidate, next_closer


def prove_expansion(response: dns.message.Message, qname: dns.name.Name, labels: int, zone: dns.name.Name, keys: dns.rdataset.Rdataset) -> str:
    """An answer synthesized from a wildcard — its RRSIG's labels field counts fewer
    labels than ``qname`` — needs the proof that ``qname`` itself does not exist: an
    NSEC covering it (RFC 4035 §5.3.4), or an NSEC3 covering the next closer name of
    the wildcard's closest encloser (RFC 5155 §8.8)."""
    encloser = dns.name.Name(qname.labels[-(labels + 1):])
    wildcard = dns.name.Name((b"*",) + encloser.labels)
    cover = next((r for r in _verified(response, NSEC, zone, keys) if _covers(r.name, r[0].next, qname)), None)
    if cover is not None:
        return f"expanded from {wildcard}; NSEC {cover.name} -> {cover[0].next} proves {qname} does not exist"
    nsec3s = _verified(response, NSEC3, zone, keys)
    if nsec3s:
        params = nsec3_params(nsec3s, qname)
        next_closer = dns.name.Name(qname.labels[-(labels + 2):])
        if _nsec3_covers(nsec3s, params, next_closer):
            return f"expanded from {wildcard}; NSEC3 covers the next closer name {next_closer}"
    raise Bogus(f"{qname}: an answer expanded from {wildcard}, but no signed NSEC/NSEC3 proves {qname} does not exist (RFC 4035 §5.3.4)")
