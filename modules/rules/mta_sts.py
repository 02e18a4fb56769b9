"""MTA-STS (RFC 8461): the policy file and the TXT record whose ``id`` tracks it.

The id is derived from the policy text, so it changes exactly when the policy does and
senders refetch it; the gateway publishes the same text at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from mailstack.core import names
from mailstack.core.errors import RuleError, quote

MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2
#: RFC 8461 §3.2 expects max_age "in the range of weeks or greater": a shorter cache
#: leaves each sender's policy to lapse between fetches, when an attacker can strip it.
ADVISED_MAX_AGE = 604800
MODES = ("enforce", "testing", "none")
#: How long a policy may stay in ``testing`` or ``none`` before a check warns: testing
#: is for the weeks of reading TLS-RPT reports before enforcing (RFC 8460), none for
#: the time senders' caches of the withdrawn policy take to lapse (RFC 8461 §8.3; a
#: month covers the common ``max_age`` of one to four weeks). Longer, the domain has
#: simply been left unprotected.
MODE_GRACE = 30 * 86400
#: Who serves the policy file: the gateways (nginx) or a web server outside mailstack.
SERVERS = ("gateway", "external")


def policy_text(mode: str, mx_hosts: Iterable[str], max_age: int) -> str:
    """The policy file body (RFC 8461 §3.2), CRLF line endings as the RFC shows."""
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {host}" for host in sorted(set(mx_hosts))]
    lines.append(f"max_age: {max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_id(text: str) -> str:
    """A policy id (1-32 alphanumerics, RFC 8461 §3.1) derived from the policy text: a
    new text is a new id, so senders refetch exactly when the policy changed, and the
    same text always keeps its id (no refetch storm on a re-deploy)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def mx_matches(pattern: str, host: str) -> bool:
    """Whether a policy ``mx:`` pattern matches an MX host (RFC 8461 §4.1): exactly, or
    a leading ``*.`` stands for exactly one label (``*.example.com`` matches
    ``mx1.example.com``, not ``example.com`` nor ``a.b.example.com``); case and a
    trailing dot do not matter (``core.names.wildcard_matches``)."""
    return names.wildcard_matches(pattern, host)


def unmatched(patterns: Iterable[str], hosts: Iterable[str]) -> list[str]:
    """The MX hosts no pattern of a policy matches: senders enforcing the policy refuse
    to deliver to them (RFC 8461 §5)."""
    listed = list(patterns)
    return [host for host in hosts if not any(mx_matches(p, host) for p in listed)]


def record_name(domain: str) -> str:
    """Where a domain's MTA-STS record lives: ``_mta-sts.<domain>`` (RFC 8461 §3.1)."""
    return f"_mta-sts.{domain}"


def policy_host(domain: str) -> str:
    """The host serving a domain's policy: ``mta-sts.<domain>`` (RFC 8461 §3.3)."""
    return f"mta-sts.{domain}"


def tlsrpt_record_name(domain: str) -> str:
    """Where a domain's TLS-RPT record lives: ``_smtp._tls.<domain>`` (RFC 8460 §3)."""
    return f"_smtp._tls.{domain}"


#: The version tags that start an MTA-STS and a TLS-RPT record.
STS_VERSION = "v=STSv1"
TLSRPT_VERSION = "v=TLSRPTv1"


def is_version(text: str, version: str) -> bool:
    """True when a TXT value is a record of that version (``v=STSv1``, ``v=TLSRPTv1``)."""
    return text.strip().lower().startswith(version.lower())


def txt_value(text: str) -> str:
    """The ``_mta-sts`` TXT value for a policy."""
    return f"{STS_VERSION}; id={policy_id(text)}"


def tlsrpt_value(rua: Iterable[str]) -> str:
    """The ``_smtp._tls`` TXT value (RFC 8460 §3)."""
    return f"{TLSRPT_VERSION}; rua={','.join(rua)}"


class PolicyError(RuleError):
    """An MTA-STS policy file that does not follow RFC 8461 §3.2."""


def parse_policy(text: str) -> dict[str, object]:
    """Parse a policy file into ``{"version", "mode", "mx": [...], "max_age"}``.

    Lines are ``key: value`` separated by LF or CRLF; ``mx`` repeats; unknown keys are
    ignored (RFC 8461 §3.2). Raises PolicyError for a missing or invalid field.
    """
    fields: dict[str, object] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"{quote(line)} is not a 'key: value' line")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower())
        elif key in ("version", "mode", "max_age"):
            fields[key] = value
    if fields.get("version") != "STSv1":
        raise PolicyError("version: STSv1 is required")
    if fields.get("mode") not in MODES:
        raise PolicyError(f"mode: {quote(fields.get('mode'))} is not one of {', '.join(MODES)}")
    age = str(fields.get("max_age", ""))
    if not age.isdigit() or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age: {quote(age)} is not an integer up to {MAX_AGE_LIMIT}")
    fields["max_age"] = int(age)
    fields["mx"] = mx
    if fields["mode"] != "none" and not mx:
        raise PolicyError("a policy in testing or enforce mode needs at least one mx")
    return fields


def mode_left(mode: str, changed_at: float | None, now: float) -> str | None:
    """Why a served policy's mode is a problem (None: it is not): ``enforce`` never is;
    ``testing``/``none`` are once left longer than ``MODE_GRACE`` since the policy last
    changed (``changed_at``, seconds since 1970, e.g. its HTTP Last-Modified), or when
    that time is not known."""
    if mode == "enforce":
        return None
    if changed_at is None:
        return f"mode {mode}, and since when is not known (the policy server sends no Last-Modified)"
    if now - changed_at <= MODE_GRACE:
        return None
    return f"mode {mode} for {(now - changed_at) / 86400:.0f} days (more than {MODE_GRACE // 86400})"
