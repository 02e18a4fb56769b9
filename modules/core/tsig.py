"""TSIG keys (RFC 8945) as mailstack takes them: the HMAC algorithms a key may use and
the form of its secret (base64, as ``tsig-keygen`` prints it). The stack's ``dns``
section, the RFC 2136 wire code and the Pulumi provider all check keys here."""

from __future__ import annotations

import base64
import binascii

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
DEFAULT_ALGORITHM = "hmac-sha256"


def valid_secret(secret: str) -> bool:
    """True when the TSIG secret is non-empty base64 (as ``tsig-keygen`` prints it)."""
    try:
        return bool(base64.b64decode(secret, validate=True))
    except (binascii.Error, ValueError):
        return False
