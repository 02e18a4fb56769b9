"""Domain-name rules, written once: what a hostname, a DNS label and an address are.

dnspython does the parsing (length limits, escapes); we add the host-name syntax of
RFC 952/1123 that MX targets and mail hosts must follow, and the underscore labels
that DKIM/DMARC/MTA-STS use.
"""

from __future__ import annotations

import ipaddress
import re

import dns.exception
import dns.name

from mailstack.core.errors import RuleError, quote

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SERVICE = re.compile(r"^_?[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")


class InvalidName(RuleError):
    """A name that is not a valid DNS or host name."""


def normalize(name: str) -> str:
    """Lower-case, strip one trailing dot: the FQDN form every Record uses."""
    return name.strip().rstrip(".").lower()


def wildcard_matches(pattern: str, host: str) -> bool:
    """Whether a name ``pattern`` matches ``host``: exactly, or a leading ``*.`` standing
    for exactly one whole label (``*.example.com`` matches ``mx1.example.com``, not
    ``example.com`` nor ``a.b.example.com``) — a certificate's names (RFC 6125 §6.4.3,
    RFC 7672 §3.2.3) and MTA-STS ``mx:`` patterns (RFC 8461 §4.1) alike; case and a
    trailing dot do not matter."""
    pattern, host = normalize(pattern), normalize(host)
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return pattern == host


def is_ip(text: str) -> bool:
    """True when text is an IPv4 or IPv6 literal (MX/CNAME targets must not be); an
    IPv6 scope (``fe80::1%eth0``) is not: it means nothing outside one host, and
    Python's parser takes any text after the ``%``."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return False
    return True


def hostname(text: object) -> str:
    """Validate a host name (LDH labels, at least two labels, not an IP) and normalize it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidName("must be a host name such as mx1.example.com")
    name = normalize(text)
    if is_ip(name):
        raise InvalidName(f"{quote(text)} is an IP address, not a host name")
    _check_length(name)
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidName(f"{quote(text)} is not a fully qualified host name")
    for label in labels:
        if not _LDH.fullmatch(label):
            raise InvalidName(f"{quote(text)}: label {quote(label)} is not a valid host-name label")
    if labels[-1].isdigit():
        raise InvalidName(f"{quote(text)}: the top-level label cannot be numeric")
    return name


def service_name(text: object) -> str:
    """A DNS name whose labels may be service labels (``_domainkey``, RFC 8552), such as a
    DKIM key's name a CNAME points at; otherwise host-name rules."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidName("must be a DNS name such as selector1._domainkey.example.com")
    name = normalize(text)
    if is_ip(name):
        raise InvalidName(f"{quote(text)} is an IP address, not a DNS name")
    _check_length(name)
    labels = name.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        raise InvalidName(f"{quote(text)} is not a fully qualified DNS name")
    for label in labels:
        if not _SERVICE.fullmatch(label):
            raise InvalidName(f"{quote(text)}: label {quote(label)} has characters other than letters, digits, hyphens and underscores")
    return name


def domain(text: object) -> str:
    """Validate a mail domain: a host name (mail domains follow host-name syntax)."""
    return hostname(text)


def label(text: object, *, allow_underscore: bool = False) -> str:
    """Validate one DNS label (a DKIM selector, an inbound subdomain)."""
    if not isinstance(text, str) or not text:
        raise InvalidName("must be a single DNS label such as 'mail'")
    value = text.strip().lower()
    pattern = _SERVICE if allow_underscore else _LDH
    if "." in value or not pattern.fullmatch(value):
        raise InvalidName(f"{quote(text)} is not a single DNS label (letters, digits, hyphens)")
    return value


def _check_length(name: str) -> None:
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as err:
        raise InvalidName(f"{quote(name)}: {err}") from err


def ipv4(text: object) -> str:
    """Validate and normalize an IPv4 address."""
    try:
        return str(ipaddress.IPv4Address(str(text).strip()))
    except ValueError as err:
        raise InvalidName(f"{quote(text)} is not an IPv4 address") from err


def ipv6(text: object) -> str:
    """Validate and normalize (compress) an IPv6 address (no ``%scope``: see is_ip)."""
    if "%" in str(text):
        raise InvalidName(f"{quote(text)} is not an IPv6 address (a %scope means nothing in DNS)")
    try:
        return str(ipaddress.IPv6Address(str(text).strip()))
    except ValueError as err:
        raise InvalidName(f"{quote(text)} is not an IPv6 address") from err


def within(name: str, zone: str) -> bool:
    """True when name is zone itself or below it."""
    return name == zone or name.endswith("." + zone)


def relative_to(name: str, zone: str) -> str:
    """The part of name below zone, '@' for the apex."""
    if name == zone:
        return "@"
    return name[: -(len(zone) + 1)]
