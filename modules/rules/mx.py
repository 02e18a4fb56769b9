"""MX rules (RFC 5321 §5.1, RFC 7505, RFC 2181 §10.3), written once: the null MX, and
what an MX target must be (a host name, neither an address nor an alias)."""

from __future__ import annotations

from mailstack.core import names

#: The null MX target (RFC 7505): the domain accepts no mail; it stands alone, priority 0.
NULL_MX = "."


def is_null(target: str) -> bool:
    """True for the null MX target ``.``."""
    return target == NULL_MX


def target_problem(target: str, *, is_alias: bool) -> str | None:
    """Why an MX target is not usable, None when it is: an IP address (RFC 7505,
    RFC 2181 §10.3) or a CNAME (RFC 2181 §10.3: an MX must name a host directly)."""
    if is_null(target):
        return None
    if names.is_ip(target):
        return f"MX target {target} is an IP address (RFC 7505, RFC 2181 §10.3)"
    if is_alias:
        return f"MX target {target} is a CNAME (RFC 2181 §10.3)"
    return None
