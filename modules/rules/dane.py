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

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailstack.core import names
from mailstack.core.errors import RuleError

#: Certificate usages RFC 7672 §3.1 lets an SMTP client use: DANE-TA(2), DANE-EE(3).
SMTP_USAGES = (2, 3)
DANE_EE, SPKI, SHA256 = 3, 1, 1
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
