"""Header helpers as Odoo's ``odoo.tools`` has them, for the stand-in's mail gateway."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import getaddresses

from mailstack.rules.odoo import formataddr


def header(message: EmailMessage, name: str) -> str:
    """``tools.decode_message_header(message, name, separator=',')``: every occurrence, joined."""
    return ",".join(str(v) for v in message.get_all(name, []) or [])


def formatted(*values: str) -> str:
    """``','.join(set(email_split_and_format(...)))`` of header values."""
    found = {formataddr((n, a)) for n, a in getaddresses([v for v in values if v]) if "@" in a}
    return ",".join(sorted(found))


def split(text: str | None) -> list[str]:
    """``tools.email_split``: the bare addresses of a comma-joined list."""
    return [a for _, a in getaddresses([text or ""]) if "@" in a]
