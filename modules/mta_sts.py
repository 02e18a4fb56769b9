"""MTA-STS (RFC 8461): the policy file and the TXT record whose ``id`` tracks it.

The id is derived from the policy text, so it changes exactly when the policy does and
senders refetch it; the gateway publishes the same text at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2
MODES = ("enforce", "testing", "none")


def policy_text(mode: str, mx_hosts: Iterable[str], max_age: int) -> str:
    """The policy file body (RFC 8461 §3.2), CRLF line endings as the RFC shows."""
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {host}" for host in sorted(set(mx_hosts))]
    lines.append(f"max_age: {max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_id(text: str) -> str:
    """A policy id (1-32 alphanumerics) derived from the policy text."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def txt_value(text: str) -> str:
    """The ``_mta-sts`` TXT value for a policy."""
    return f"v=STSv1; id={policy_id(text)}"


def tlsrpt_value(rua: Iterable[str]) -> str:
    """The ``_smtp._tls`` TXT value (RFC 8460 §3)."""
    return f"v=TLSRPTv1; rua={','.join(rua)}"
