"""Odoo 17's own mail rules that mailstack must predict: which outgoing server Odoo picks
for a From address and whether it rewrites that From, and how Odoo normalises alias
names.

Each function transcribes one Odoo 17.0 function as read in Odoo's source
(/work/research/odoo17-spec.md, copies [B] ``bragadossantos/odoo`` @ 3c0f43f2, a 17.0
full-tree snapshot; no ``odoo/odoo`` 17.0 commit could be cited, see the spec's §0):
a fact of behaviour, not copied code. The Odoo stand-in (``mailstack.lab.odoo``) runs
them as Odoo does; the ``odoo`` checks use them to say what Odoo will do with the
declared settings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
import email.utils
from email.utils import getaddresses

#: RFC 5322 dot-atom, Odoo 17's ``mail_alias.dot_atom_text`` (alias and domain names).
_ATEXT = r"[a-zA-Z0-9!#$%&'*+\-/=?^_`{|}~]"
DOT_ATOM = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")


def email_normalize(address: str | None) -> str | None:
    """``odoo.tools.email_normalize``: the single address of ``address``, lowercased
    (Odoo lowercases an ASCII local part and always the domain), None when there is not
    exactly one address."""
    if not address:
        return None
    found = [a for _, a in getaddresses([address]) if "@" in a]
    if len(found) != 1:
        return None
    local, _, domain = found[0].rpartition("@")
    return f"{local.lower() if local.isascii() else local}@{domain.lower()}"


def email_domain(address: str | None) -> str | None:
    """The lowercased domain of a normalised address."""
    normalized = email_normalize(address)
    return normalized.rpartition("@")[2] if normalized else None


def match_from_filter(email_from: str | None, from_filter: str | None) -> bool:
    """``ir.mail_server._match_from_filter`` (Odoo 17): an empty filter matches every
    From; otherwise each comma-separated part matches the whole address when it holds
    an ``@`` (case-insensitive), else the address's domain — exactly, no subdomains."""
    if not from_filter:
        return True
    normalized = email_normalize(email_from)
    if not normalized:
        return False
    domain = normalized.rpartition("@")[2]
    for part in (p.strip() for p in from_filter.split(",")):
        if not part:
            continue
        if "@" in part:
            if email_normalize(part) == normalized:
                return True
        elif part.lower() == domain:
            return True
    return False


@dataclass(frozen=True, slots=True)
class MailServer:
    """What ``_find_mail_server`` needs of one ``ir.mail_server`` record."""

    id: int
    name: str
    from_filter: str | None
    sequence: int = 10
    active: bool = True


@dataclass(frozen=True, slots=True)
class ServerChoice:
    """Odoo's choice for one From: the server (None: odoo.conf's smtp_* options), the
    address it will send as, and Odoo's warning when nothing matched."""

    server: MailServer | None
    smtp_from: str | None
    fallback: bool = False


def find_mail_server(
    email_from: str | None,
    servers: Sequence[MailServer],
    notifications_email: str | None,
    default_from_filter: str | None,
) -> ServerChoice:
    """``ir.mail_server._find_mail_server`` (Odoo 17, spec §9.3).

    ``servers`` are the ``ir.mail_server`` records; ``notifications_email`` is the
    company's alias domain ``default_from_email`` (Odoo's ``_get_default_from_address``);
    ``default_from_filter`` is ``mail.default.from_filter`` or odoo.conf's ``from_filter``,
    used only when no server record exists."""
    active = sorted((s for s in servers if s.active), key=lambda s: (s.sequence, s.id))
    normalized = email_normalize(email_from)
    notifications = email_normalize(notifications_email)

    def first_match(target: str, by_domain: bool) -> MailServer | None:
        for server in active:
            for part in (p.strip() for p in (server.from_filter or "").split(",")):
                if not part:
                    continue
                if by_domain and "@" not in part and part.lower() == target:
                    return server
                if not by_domain and "@" in part and email_normalize(part) == target:
                    return server
        return None

    for address in (normalized, notifications):
        if not address:
            continue
        server = first_match(address, False) or first_match(address.rpartition("@")[2], True)
        if server:
            return ServerChoice(server, email_from if address == normalized else notifications_email)
    unfiltered = next((s for s in active if not s.from_filter), None)
    if unfiltered:
        return ServerChoice(unfiltered, notifications_email or email_from)
    if active:
        return ServerChoice(active[0], notifications_email or email_from, fallback=True)
    if match_from_filter(email_from, default_from_filter):
        return ServerChoice(None, email_from)
    if notifications_email and match_from_filter(notifications_email, default_from_filter):
        return ServerChoice(None, notifications_email)
    return ServerChoice(None, notifications_email or email_from, fallback=True)


def formataddr(pair: tuple[str, str]) -> str:
    """``odoo.tools.formataddr``: an ASCII name always in quotes (``"Name" <a@b>``);
    a non-ASCII one RFC 2047-encoded."""
    name, address = pair
    if not name:
        return address
    if not name.isascii():
        return email.utils.formataddr((name, address), charset="utf-8")
    escaped = re.sub(r'([\\"])', r"\\\1", name)
    return f'"{escaped}" <{address}>'


def encapsulate_email(old: str, new: str) -> str:
    """``odoo.tools.encapsulate_email``: ``"<old name or old local part>" <new>``."""
    parsed = getaddresses([old])
    name, address = parsed[0] if parsed else ("", "")
    display = name or address.partition("@")[0] or old
    return formataddr((display, new))


@dataclass(frozen=True, slots=True)
class Envelope:
    """What ``_prepare_email_message`` makes of one message: the header From after a
    possible rewrite and the envelope sender (MAIL FROM)."""

    header_from: str
    mail_from: str
    rewritten: bool


def prepare_envelope(header_from: str, smtp_from: str | None, bounce_address: str | None,
                     notifications_email: str | None, session_from_filter: str | None) -> Envelope:
    """``ir.mail_server._prepare_email_message`` (Odoo 17, spec §9.5): the From becomes
    ``"Name" <notifications@…>`` when the chosen server sends as the notifications
    address; the envelope sender is the bounce address when the session's from_filter
    covers it, else the (rewritten) From."""
    smtp_from = smtp_from or header_from
    notifications = email_normalize(notifications_email)
    new_from = header_from
    if notifications and email_normalize(smtp_from) == notifications and email_normalize(header_from) != notifications:
        new_from = encapsulate_email(header_from, notifications_email or notifications)
    elif email_normalize(smtp_from) != email_normalize(header_from):
        new_from = smtp_from
    envelope = new_from
    if bounce_address and match_from_filter(bounce_address, session_from_filter):
        envelope = bounce_address
    addresses = [a for _, a in getaddresses([envelope]) if a]
    return Envelope(new_from, addresses[-1] if addresses else envelope, new_from != header_from)


def sanitize_alias_name(name: str | None, *, is_email: bool = False) -> str | bool:
    """``mail.alias._sanitize_alias_name`` (Odoo 17): strip, remove accents, lowercase,
    cut at ``@``, trim and collapse dots, replace disallowed runs by ``-``, non-ASCII
    by ``?``; False when nothing is left. ``+`` is allowed and kept."""
    sanitized = name.strip() if name else ""
    right = sanitized.lower().partition("@")[2] if is_email else ""
    if sanitized:
        sanitized = _remove_accents(sanitized).lower().split("@")[0]
        sanitized = re.sub(r"^\.+|\.+$|\.+(?=\.)", "", sanitized)
        sanitized = re.sub(r"[^\w!#$%&'*+\-/=?^_`{|}~.]+", "-", sanitized)
        sanitized = sanitized.encode("ascii", errors="replace").decode()
    if not sanitized.strip():
        return False
    return f"{sanitized}@{right}" if is_email and right else sanitized


def _remove_accents(text: str) -> str:
    """``odoo.tools.remove_accents``: drop combining marks after NFKD."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")
