"""The kinds of string a stack declares, each checked once, here.

Stack files may come from a pull request: every string that can reach a rendered file
(main.cf, opendkim.conf, mailgate.conf), a shell command on a gateway, a URL or a DNS
record is one of these kinds, and a value that is not is refused at its key. A kind is
a function ``(raw value) -> normalised str`` raising ValueError with a message that
quotes at most ``QUOTE_LIMIT`` characters of the value; the reader
(``mailstack.config.reader``) reports it at the key being read::

    cert = reader.string(data.get("cert"), (*path, "cert"), kinds.pem_path)

Every kind starts with ``text``: a string, not blank, at most ``MAX_TEXT`` characters,
without control characters (C0, C1, DEL, Unicode line and paragraph separators and
format characters such as bidi overrides), which no config format, shell or record of
ours can hold safely. ``ConfigReader`` applies ``text`` to every string it reads, so
even a key read with a plain ``reader.string`` never lets a newline through.

Host names, labels and addresses are ``mailstack.core.names`` (mail rules, written
once); report URIs are ``mailstack.rules.dmarc.check_uri``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from mailstack.core import names
from mailstack.core.errors import quote

#: A kind: a raw value in, the normalised string out, ValueError naming the problem.
Kind = Callable[[Any], str]

#: The longest string any key takes (a whole DKIM record of a 4096-bit key is ~750).
MAX_TEXT = 4096
#: Unicode categories refused everywhere: control (C0, C1, DEL), format (bidi
#: overrides, zero-width joiners, BOM), surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Odoo's own rule for database names (odoo.service.db.DBNAME_PATTERN); PostgreSQL
#: truncates identifiers at 63 bytes.
_DBNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,62}")
#: An e-mail local part as the gateway accepts it: an RFC 5321 dot-string of the
#: characters Postfix maps and Odoo's aliases use, at most 64 octets (§4.5.3.1.1).
_LOCAL_PART = re.compile(r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*")
#: A login (Odoo user, mailgate login): printable ASCII without spaces, quotes or
#: shell and config metacharacters; Odoo logins are often e-mail addresses.
_LOGIN = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
#: A POSIX user name (useradd's default rule), for SSH logins.
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
#: A path component: letters, digits and ``. _ + -`` (no space, quote, ``$``, ``;``,
#: ``:``, ``,``, ``=``, ``#``, ``%``, glob or backslash).
_PATH_PART = re.compile(r"[A-Za-z0-9._+-]{1,255}")
#: URL path characters (RFC 3986 pchar without sub-delims a config could misread).
_URL_PATH = re.compile(r"(?:/(?:[A-Za-z0-9._~+-]|%[0-9A-Fa-f]{2})*)*")
#: A Pulumi stack name (``pulumi stack init``: alphanumerics, ``-``, ``_``, ``.``).
_STACK_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
#: A check id as the check suite registers it (``spf.lookups``, ``e2e.outbound.dkim``).
_CHECK_ID = re.compile(r"[a-z0-9-]{1,40}(?:\.[a-z0-9-]{1,40}){0,4}")
#: The longest absolute path (Linux PATH_MAX, 4096 bytes with the NUL).
_PATH_MAX = 4095


def text(value: Any, *, lines: bool = False) -> str:
    """Any string of a stack: not blank, at most MAX_TEXT characters, no control or
    invisible formatting characters; surrounding whitespace stripped. ``lines``
    allows line breaks and tabs, for the one value that is a PEM block (a third-party
    DKIM key, of which only the base64 is kept)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_type_name(value)}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"is {len(value)} characters long, over the limit of {MAX_TEXT}")
    for index, char in enumerate(value):
        if lines and char in "\n\r\t":
            continue
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(f"{quote(value)} contains the control character U+{ord(char):04X} at position {index}")
    stripped = value.strip()
    if not stripped:
        raise ValueError("must be a non-empty string")
    return stripped


def hostname(value: Any) -> str:
    """A host name (``mx1.example.com``): LDH labels, fully qualified, normalised."""
    return names.hostname(text(value) if isinstance(value, str) else value)


def dkim_key_name(value: Any) -> str:
    """The name of a DKIM key record a CNAME points at (a provider's target such as
    ``selector1-example-com._domainkey.contoso.n-v1.dkim.mail.microsoft``): a DNS name
    with a ``_domainkey`` label (RFC 6376 §3.6.2.1)."""
    name = names.service_name(text(value) if isinstance(value, str) else value)
    if "_domainkey" not in name.split(".")[1:-1]:
        raise ValueError(f"{quote(name)} is not the name of a DKIM key (<selector>._domainkey.<domain>): copy the CNAME's target, the value it points to")
    return name


def domain(value: Any) -> str:
    """A mail domain: host-name syntax (``example.com``)."""
    return names.domain(text(value) if isinstance(value, str) else value)


def label(value: Any) -> str:
    """One DNS label (a selector, a subdomain, a tenant)."""
    return names.label(text(value) if isinstance(value, str) else value)


def ipv4(value: Any) -> str:
    """An IPv4 address, normalised."""
    return names.ipv4(text(value) if isinstance(value, str) else value)


def ipv6(value: Any) -> str:
    """An IPv6 address, compressed; no ``%scope``."""
    return names.ipv6(text(value) if isinstance(value, str) else value)


def ip_address(value: Any) -> str:
    """An IPv4 or IPv6 address, normalised; no ``%scope``."""
    raw = text(value)
    if "%" in raw:
        raise ValueError(f"{quote(value)} is not an IP address (a %scope is not allowed)")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError(f"{quote(value)} is not an IP address") from None


def host_address(value: Any) -> str:
    """Where a client connects (an SSH target, a DNS server): an IP address or a host name."""
    try:
        return ip_address(value)
    except ValueError:
        pass
    try:
        return hostname(value)
    except ValueError:
        raise ValueError(f"{quote(value)} is not an IP address or host name") from None


def ip_network(value: Any) -> str:
    """An address or network (``10.0.0.5``, ``10.0.0.0/24``, ``2001:db8::/48``),
    host bits clear; no ``%scope``."""
    raw = text(value)
    try:
        if "%" in raw:
            raise ValueError
        return str(ipaddress.ip_network(raw, strict=True))
    except ValueError:
        raise ValueError(f"{quote(value)} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None


def local_part(value: Any) -> str:
    """An e-mail local part (``sales``, ``bounce``, ``first.last``), lower-cased."""
    raw = text(value).lower()
    if len(raw) > 64 or not _LOCAL_PART.fullmatch(raw):
        raise ValueError(f"{quote(value)} is not an e-mail local part (letters, digits and . _ + -, at most 64)")
    return raw


def email_address(value: Any) -> str:
    """An e-mail address ``local@domain``: a local part and a host name."""
    raw = text(value)
    local, at, host = raw.rpartition("@")
    if not at:
        raise ValueError(f"{quote(value)} is not an e-mail address (local@domain)")
    try:
        return f"{local_part(local)}@{names.domain(host)}"
    except ValueError:
        raise ValueError(f"{quote(value)} is not an e-mail address (local@domain)") from None


def database_name(value: Any) -> str:
    """An Odoo database name on premise (case kept: the mailgate logs into it)."""
    raw = text(value)
    if not _DBNAME.fullmatch(raw):
        raise ValueError(f"{quote(value)} is not an Odoo database name (letters, digits, '_', '.', '-')")
    return raw


def login_name(value: Any) -> str:
    """An Odoo login (``admin``, ``mailgate@example.com``)."""
    raw = text(value)
    if not _LOGIN.fullmatch(raw):
        raise ValueError(f"{quote(value)} is not a login name (letters, digits and . _ @ + -, at most 128)")
    return raw


def sasl_user(value: Any) -> str:
    """An SMTP AUTH user name in the gateway's sasldb (no ``@``: the realm is the
    gateway's host name; no ``:``, which separates fields in sasldb tools)."""
    raw = text(value)
    if "@" in raw or ":" in raw or not _LOGIN.fullmatch(raw):
        raise ValueError(f"{quote(value)} must be a user name without spaces, ':' or '@' (letters, digits and . _ + -)")
    return raw


def unix_user(value: Any) -> str:
    """A POSIX user name (the SSH login on a gateway)."""
    raw = text(value)
    if not _USER.fullmatch(raw):
        raise ValueError(f"{quote(value)} is not a user name (lower-case letters, digits, '_', '-', '.', at most 32)")
    return raw


def absolute_path(value: Any) -> str:
    """An absolute file path on a gateway host: ``/`` then components of letters,
    digits and ``. _ + -``; no ``.`` or ``..`` component, no empty one, no trailing
    ``/``. So it is one word in main.cf, opendkim.conf, INI and a shell command."""
    raw = text(value)
    if not raw.startswith("/"):
        raise ValueError(f"{quote(value)} must be an absolute path on the gateway host")
    if len(raw.encode()) > _PATH_MAX:
        raise ValueError(f"is {len(raw)} characters long, over the path limit of {_PATH_MAX}")
    for part in raw[1:].split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"{quote(value)} must be a plain absolute path (no '..', '.' or empty component, no trailing '/')")
        if not _PATH_PART.fullmatch(part):
            raise ValueError(
                f"{quote(value)} must be an absolute path of letters, digits and . _ + - "
                "(no spaces, quotes or shell and config metacharacters)"
            )
    return raw


def pem_path(value: Any) -> str:
    """The absolute path of a PEM file (certificate or key) on a gateway host."""
    return absolute_path(value)


def url(schemes: tuple[str, ...]) -> Kind:
    """A kind for a base URL with one of ``schemes``: host name or IP address, optional
    port and path; no credentials, query or fragment. Normalised without a trailing
    ``/``."""

    def check(value: Any) -> str:
        raw = text(value)
        shown = " or ".join(f"{s}://" for s in schemes)
        try:
            parts = urllib.parse.urlsplit(raw)
            port = parts.port
        except ValueError:
            raise ValueError(f"{quote(value)} is not an {shown} URL") from None
        if parts.scheme.lower() not in schemes or not parts.netloc:
            raise ValueError(f"{quote(value)} is not an {shown} URL")
        if "@" in parts.netloc:
            raise ValueError(
                f"{quote(value)} carries credentials (user:password@): they would be written to "
                "world-readable files; give the password as a secret (docs/configuration.md#secrets)"
            )
        if parts.query or parts.fragment or raw.endswith(("?", "#")):
            raise ValueError(f"{quote(value)} must be a base URL without ?query or #fragment")
        host = parts.hostname or ""
        if not _url_host(host):
            raise ValueError(f"{quote(value)}: {quote(host)} is not a host name or IP address")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"{quote(value)}: port {port} is not between 1 and 65535")
        if not _URL_PATH.fullmatch(parts.path):
            raise ValueError(f"{quote(value)}: the path may hold letters, digits, . _ ~ + - and %-escapes only")
        return raw.rstrip("/")

    return check


def _url_host(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        names.hostname(host)
    except names.InvalidName:
        return False
    return True


def stack_name(value: Any) -> str:
    """A Pulumi stack name (``--stack NAME`` reads ``Pulumi.NAME.yaml``): letters,
    digits, ``-``, ``_``, ``.``; never a path."""
    raw = text(value)
    if not _STACK_NAME.fullmatch(raw) or ".." in raw:
        raise ValueError(f"{quote(value)} is not a stack name (letters, digits, '-', '_', '.'; no '/' or '..')")
    return raw


def check_id(value: Any) -> str:
    """A check id or group of the check suite (``spf.lookups``, ``dkim``)."""
    raw = text(value)
    if not _CHECK_ID.fullmatch(raw):
        raise ValueError(f"{quote(value)} is not a check id (e.g. spf.lookups)")
    return raw


#: Host key types OpenSSH's sshd offers (``ssh -Q HostKeyAlgorithms``, without certificates).
SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def ssh_host_key(value: Any) -> str:
    """An SSH host public key as ``/etc/ssh/ssh_host_*_key.pub`` holds it (``TYPE BASE64
    [comment]``), returned as ``TYPE BASE64``: the key pulumi-command pins the host to."""
    raw = text(value) if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw.isprintable():
        raise ValueError(f"{quote(value)} is not an SSH public key line (TYPE BASE64, e.g. the host's ssh_host_ed25519_key.pub)")
    fields = raw.split()
    if len(fields) < 2 or fields[0] not in SSH_KEY_TYPES:
        raise ValueError(f"{quote(raw[:40])} is not an SSH public key of type {', '.join(SSH_KEY_TYPES)}")
    key = f"{fields[0]} {fields[1]}"
    try:
        serialization.load_ssh_public_key(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
        raise ValueError(f"{quote(key[:40])}...: not a valid {fields[0]} public key") from err
    return key


def _type_name(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
    return next((name for t, name in kinds.items() if isinstance(value, t)), type(value).__name__)
