"""The ``mailstack:inbound`` section: how mail reaches Odoo (MX to Odoo's servers, own
gateways, forwarding, IMAP fetch, or nothing: a null MX) and what it accepts."""

from __future__ import annotations

from typing import Any

from mailstack.config import kinds
from mailstack.config.odoo import read_imap
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.model import Gateway, Inbound, InboundMode, MxHost, Odoo
from mailstack.rules import limits
from mailstack.rules.senders import GOOGLE_MX, MICROSOFT_MX_PRIORITY, microsoft_mx


def _mx_list(reader: ConfigReader, value: Any, path: Path, domain: str | None) -> tuple[MxHost, ...]:
    if value == "google":
        return GOOGLE_MX
    if value == "microsoft":
        return microsoft_mx(domain or "invalid")
    if isinstance(value, dict) and set(value) == {"microsoft"}:
        # The tenant's own MX host as the admin centre shows it (``….mx.microsoft`` for
        # inbound DANE, or the classic ``….mail.protection.outlook.com``).
        host = reader.convert(value["microsoft"], (*path, "microsoft"), kinds.hostname)
        return (MxHost(host, MICROSOFT_MX_PRIORITY),) if host else ()
    items = reader.sequence(value, path, limits.MX_HOSTS, "MX hosts") or []
    result: list[MxHost] = []
    for index, item in enumerate(items):
        data = reader.mapping(item, (*path, index), ("host", "priority"))
        if data is None:
            continue
        if data.get("host") is None:
            reader.fail((*path, index, "host"), "is required")
            continue
        host = reader.convert(data["host"], (*path, index, "host"), kinds.hostname)
        priority = reader.integer(data.get("priority"), (*path, index, "priority"), 0, 65535, default=10)
        if host and priority is not None:
            result.append(MxHost(host, priority))
    return tuple(result)


def read_inbound(reader: ConfigReader, value: Any, odoo: Odoo | None, gateways: tuple[Gateway, ...] | None, domain: str | None) -> Inbound | None:
    path: Path = ("inbound",)
    data = reader.mapping(value, path, ("mode", "subdomain", "record", "mx", "aliases", "acceptAll", "imap", "postmaster"))
    if data is None:
        return None
    modes = tuple(m.value for m in InboundMode)
    if value is None:
        reader.fail(path, f"is required: {{mode: {'|'.join(modes)}, ...}} (none publishes a null MX: the domain takes no mail)")
        return None
    if data.get("mode") is None:
        # No default: "none" publishes a null MX (RFC 7505), which would silently stop
        # the mail of a domain whose mailboxes live elsewhere.
        reader.fail((*path, "mode"), f"is required: one of {', '.join(modes)} (none publishes a null MX: the domain takes no mail)")
        return None
    mode_text = reader.choice(data.get("mode"), (*path, "mode"), modes)
    if mode_text is None:
        return None
    mode = InboundMode(mode_text)
    subdomain = None
    has_subdomain = data.get("subdomain") is not None
    if has_subdomain:
        subdomain = reader.convert(data["subdomain"], (*path, "subdomain"), kinds.label)
    record = reader.choice(data.get("record"), (*path, "record"), ("mx", "cname"), default="mx") or "mx"
    mx: tuple[MxHost, ...] = ()
    if data.get("mx") is not None:
        if mode not in (InboundMode.FORWARD, InboundMode.IMAP):
            reader.fail((*path, "mx"), f"only applies to modes forward and imap, not {mode.value}")
        else:
            mx = _mx_list(reader, data["mx"], (*path, "mx"), domain)
    aliases: list[str] = []
    alias_items = reader.sequence(data.get("aliases"), (*path, "aliases"), limits.INBOUND_ALIASES, "aliases") or []
    for index, alias in enumerate(alias_items):
        local = reader.convert(alias, (*path, "aliases", index), kinds.local_part)
        if local and local not in aliases:
            aliases.append(local)
    accept_all = reader.boolean(data.get("acceptAll"), (*path, "acceptAll"))
    if mode is InboundMode.ODOO_MX:
        if odoo and not odoo.saas:
            reader.fail((*path, "mode"), "odoo-mx needs odoo.hosting online or sh (inbound on <db>.odoo.com)")
        if not has_subdomain:
            reader.fail((*path, "subdomain"), "is required for odoo-mx: Odoo's inbound mail must use a dedicated subdomain, never the root")
    elif data.get("record") is not None:
        reader.fail((*path, "record"), "only applies to mode odoo-mx")
    if mode is InboundMode.GATEWAY and not gateways and not reader.has_error(("gateways",)):
        reader.fail((*path, "mode"), "gateway needs at least one entry in mailstack:gateways")
    if mode is InboundMode.NONE and subdomain:
        reader.fail((*path, "subdomain"), "does not apply to mode none")
    if mode is InboundMode.FORWARD and data.get("mx") is None and gateways:
        # No mailbox provider's MX on a stack with gateways: the gateways are the MX and
        # redirect the aliases to <db>.odoo.com (Odoo's "Redirections"), with SRS.
        # Without gateways and mx, the MX is left to whoever runs the mailboxes.
        if odoo and not odoo.saas:
            reader.fail((*path, "mode"), "forward through the gateways redirects to <db>.odoo.com: it needs odoo.hosting online or sh "
                        "(on premise, use mode gateway: the mailgate hands mail to Odoo directly)")
    imap = read_imap(reader, data.get("imap"), (*path, "imap"), mode)
    postmaster = None
    if data.get("postmaster") is not None:
        postmaster = reader.convert(data["postmaster"], (*path, "postmaster"), kinds.email_address)
        receiving = mode is InboundMode.GATEWAY or (mode is InboundMode.FORWARD and data.get("mx") is None and gateways)
        if not receiving:
            reader.fail((*path, "postmaster"), "only applies when the gateways receive the mail (mode gateway, or forward through the gateways): "
                        "elsewhere the mailbox provider routes postmaster@ and abuse@")
    return Inbound(mode, subdomain, record, mx, tuple(aliases), accept_all, imap, postmaster)
