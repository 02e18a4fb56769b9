"""DANE for SMTP (RFC 7672, RFC 6698, RFC 7671), written once: the TLSA record of a
gateway — ``_25._tcp.<mx host>``, ``3 1 1`` (DANE-EE, the SubjectPublicKeyInfo,
SHA-256) — and what a certificate must present to match one.

DANE-EE of the *key* survives certificate renewals that keep the key (certbot
``--reuse-key``); a new key needs the rollover of RFC 7671 §8.1: publish the next key's
record beside the current one (``gateway.tls.dane.next``), wait at least the TLSA TTL,
then switch the certificate, then drop the old record. The plan, the policy pack
(``tlsa-valid``) and the checks all use this module.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mailstack.core import names
from mailstack.core.errors import RuleError

#: Certificate usages RFC 7672 §3.1 lets an SMTP client use: DANE-TA(2), DANE-EE(3).
SMTP_USAGES = (2, 3)
DANE_TA, DANE_EE, SPKI, SHA256 = 2, 3, 1, 1
FULL = 0
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DaneError(RuleError):
    """A TLSA value or a key digest that is not what DANE for SMTP needs."""


def tlsa_name(host: str, port: int = 25) -> str:
    """The TLSA owner of an MX host (RFC 7672 §2.2.3): ``_25._tcp.<host>``."""
    return f"_{port}._tcp.{names.normalize(host)}"


def digest(text: str) -> str:
    """A SHA-256 digest as the record holds it: 64 hex digits (lower case)."""
    value = text.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(value):
        raise DaneError(f"{text[:80]!r} is not a SHA-256 digest (64 hex digits); get it with: "
                        "openssl x509 -in CERT -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum")
    return value


def content(key_digest: str) -> str:
    """The TLSA content of a key digest: ``3 1 1 <hex>``."""
    return f"{DANE_EE} {SPKI} {SHA256} {digest(key_digest)}"


def parse(value: str) -> tuple[int, int, int, str]:
    """(usage, selector, matching type, hex data) of a TLSA content; DaneError for a
    value a DANE SMTP client cannot use (RFC 7672 §3.1: usages 0 and 1 are unusable)."""
    parts = value.split()
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        raise DaneError(f"{value[:80]!r} is not 'usage selector matching-type data'")
    usage, selector, mtype = (int(p) for p in parts[:3])
    data = "".join(parts[3:]).lower()
    if usage not in SMTP_USAGES:
        raise DaneError(f"usage {usage} is unusable for SMTP (RFC 7672 §3.1.3): use 3 (DANE-EE) or 2 (DANE-TA)")
    if selector not in (0, 1) or mtype not in (0, 1, 2):
        raise DaneError(f"selector {selector} / matching type {mtype} undefined (RFC 6698 §2.1)")
    lengths = {1: 64, 2: 128}
    if not re.fullmatch(r"[0-9a-f]+", data) or (mtype in lengths and len(data) != lengths[mtype]):
        raise DaneError(f"data {data[:20]}... is not the {('full', 'SHA-256', 'SHA-512')[mtype]} value its matching type says")
    return usage, selector, mtype, data


def association(cert: x509.Certificate, selector: int, mtype: int) -> str:
    """The certificate association data of ``cert`` for a selector and matching type."""
    if selector == 1:
        data = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        data = cert.public_bytes(serialization.Encoding.DER)
    if mtype == 1:
        return hashlib.sha256(data).hexdigest()
    if mtype == 2:
        return hashlib.sha512(data).hexdigest()
    return data.hex()


def key_digest(cert_pem: bytes) -> str:
    """The ``3 1 1`` digest of a PEM certificate's key (what ``tls.dane.digest`` takes)."""
    return association(x509.load_pem_x509_certificate(cert_pem), SPKI, SHA256)


def mismatch(chain: Sequence[x509.Certificate], host: str, record: tuple[int, int, int, str],
             now: datetime.datetime | None = None) -> str | None:
    """Why the presented ``chain`` (leaf first) does not satisfy one parsed TLSA
    ``record`` for the MX ``host``; None when it does.

    DANE-EE(3): the leaf's data matches; no name, chain or expiry check (RFC 7672
    §3.1.1). DANE-TA(2), RFC 7672 §3.1.2 and RFC 7671 §5.2.2: the trust anchor is any
    certificate of the chain above the leaf whose data matches — for ``2 0 0`` also
    the record's own certificate when the server leaves it out — every certificate
    from the leaf up to it is issued by the next (name and signature), each of them
    is within its validity period (a DANE-TA chain is a PKIX chain with another
    anchor: RFC 7671 §5.2.2 keeps the expiry checks that §5.1 drops for DANE-EE;
    the anchor itself is trusted as published), and the leaf names the MX host
    (§3.2.2/§3.2.3; the TLSA base domain here is the MX host name: the check does
    not take TLSA from a CNAME target)."""
    usage, selector, mtype, data = record
    leaf = chain[0]
    if usage == DANE_EE:
        return None if association(leaf, selector, mtype) == data else "the leaf's data differs"
    anchors = [i for i in range(1, len(chain)) if association(chain[i], selector, mtype) == data]
    published: x509.Certificate | None = None
    if not anchors and selector == FULL and mtype == FULL:
        try:
            published = x509.load_der_x509_certificate(bytes.fromhex(data))
        except ValueError as err:
            return f"the record's certificate does not parse: {err}"
    if not anchors and published is None:
        return "no certificate of the presented chain matches (a DANE-TA server must send its anchor, RFC 7672 §3.1.2)"
    when = now or datetime.datetime.now(datetime.timezone.utc)
    reasons: list[str] = []
    for top in anchors or [len(chain)]:
        path: list[x509.Certificate | None] = [*chain[:top + 1]] if anchors else [*chain, published]
        reason = _path_fault(path, when)
        if reason is None:
            break
        reasons.append(reason)
    else:
        return "; ".join(dict.fromkeys(reasons))
    if not names_host(leaf, host):
        return f"the trust anchor matches, but the leaf does not name {names.normalize(host)} (it names {', '.join(sorted(set(certificate_names(leaf)))) or 'nothing'})"
    return None


def _path_fault(path: Sequence[x509.Certificate | None], now: datetime.datetime) -> str | None:
    """Why ``path`` (leaf ... anchor) is not a chain to its last certificate."""
    certs = [c for c in path if c is not None]
    for child, parent in zip(certs, certs[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return f"{_subject(child)} is not issued by {_subject(parent)}"
    for cert in certs[:-1]:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"{_subject(cert)} is outside its validity ({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
    return None


def _subject(cert: x509.Certificate) -> str:
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return repr(str(common[0].value)) if common else cert.subject.rfc4514_string()


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names a certificate is for: its subjectAltName dNSNames, else its CN
    (RFC 6125 §6.4.4) — what the SMTP probe reports and DANE-TA's name check reads."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
        if found:
            return tuple(found)
    except x509.ExtensionNotFound:
        pass
    return tuple(str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert`` names ``host`` (RFC 7672 §3.2.3: a ``*`` only as the whole
    left-most label, matching one label: ``core.names.wildcard_matches``)."""
    return any(names.wildcard_matches(name, host) for name in certificate_names(cert))
