"""The ``mailstack:outbound`` section: who sends the domain's mail, one sender each.

A sender is a profile name (``odoo``, ``gateway``, ``mailjet``, ``google``,
``microsoft``) with its inputs, or raw SPF terms (``{spf: "ip4:192.0.2.1 ..."}``); the
SPF and DKIM each contributes come from ``mailstack.rules.senders``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.model import Gateway, Odoo, Sender, SenderKind
from mailstack.rules import dkim, senders, spf

_SENDER_FIELDS: dict[str, tuple[str, ...]] = {
    "odoo": ("type",),
    "gateway": ("type",),
    "mailjet": ("type", "dkimKey", "dkimSelector"),
    "google": ("type", "dkimKey", "dkimSelector"),
    "microsoft": ("type", "tenant", "dkim"),
}


def read_outbound(reader: ConfigReader, value: Any, odoo: Odoo | None, gateways: tuple[Gateway, ...] | None) -> tuple[Sender, ...] | None:
    items = reader.sequence(value, ("outbound",))
    if items is None:
        return None
    result: list[Sender] = []
    for index, item in enumerate(items):
        path: Path = ("outbound", index)
        sender = _sender(reader, item, path)
        if sender is None:
            continue
        if sender.kind is not SenderKind.SPF and any(s.kind is sender.kind for s in result):
            reader.fail(path, f"sender {sender.kind.value} is declared twice")
            continue
        if sender.kind is SenderKind.ODOO and odoo and not odoo.saas:
            reader.fail(path, "sender odoo (Odoo's mail servers) needs odoo.hosting online or sh; on premise send through a gateway or a provider")
        if sender.kind is SenderKind.GATEWAY and not gateways and not reader.has_error(("gateways",)):
            reader.fail(path, "sender gateway needs at least one entry in mailstack:gateways")
        result.append(sender)
    return tuple(result)


def _sender(reader: ConfigReader, item: Any, path: Path) -> Sender | None:
    if isinstance(item, str):
        item = {"type": item}
    if not isinstance(item, Mapping):
        reader.fail(path, "must be a sender name (odoo, gateway, mailjet, google, microsoft) or a mapping")
        return None
    if "spf" in item and "type" not in item:
        data = reader.mapping(item, path, ("spf",))
        if data is None:
            return None
        terms_text = reader.string(data.get("spf"), (*path, "spf"))
        if terms_text is None:
            return None
        terms = tuple(terms_text.split())
        for term in terms:
            if reader.convert(term, (*path, "spf"), spf.sender_term) is None:
                return None
        return Sender(SenderKind.SPF, spf_terms=terms)
    kind = reader.choice(item.get("type"), (*path, "type"), tuple(_SENDER_FIELDS))
    if kind is None:
        if item.get("type") is None:
            reader.fail((*path, "type"), "is required")
        return None
    data = reader.mapping(item, path, _SENDER_FIELDS[kind])
    if data is None:
        return None
    sender_kind = SenderKind(kind)
    if sender_kind is SenderKind.MICROSOFT:
        tenant = reader.string(data.get("tenant"), (*path, "tenant"))
        if tenant is None:
            reader.fail((*path, "tenant"), "is required for microsoft (the <tenant>.onmicrosoft.com prefix)")
            return None
        tenant = reader.convert(tenant, (*path, "tenant"), kinds.label)
        targets = _microsoft_targets(reader, data.get("dkim"), (*path, "dkim"))
        return Sender(sender_kind, tenant=tenant, dkim_targets=targets) if tenant and targets is not None else None
    if sender_kind in (SenderKind.GOOGLE, SenderKind.MAILJET):
        key = None
        if data.get("dkimKey") is not None:
            key = reader.convert(data["dkimKey"], (*path, "dkimKey"), _third_party_key, lines=True)
        selector = None
        if data.get("dkimSelector") is not None:
            selector = reader.convert(data["dkimSelector"], (*path, "dkimSelector"), kinds.label)
        return Sender(sender_kind, dkim_key=key, dkim_selector=selector)
    return Sender(sender_kind)


def _microsoft_targets(reader: ConfigReader, value: Any, path: Path) -> tuple[tuple[str, str, str], ...] | None:
    """``dkim: {<sending name>: {selector1: HOST, selector2: HOST}}``: the CNAME targets
    Microsoft 365's admin centre shows for each domain (classic ``….onmicrosoft.com``
    or ``….dkim.mail.microsoft``), both selectors, each the name of a DKIM key."""
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        reader.fail(path, "must map each sending domain to {selector1: HOST, selector2: HOST}, the CNAME targets the admin centre shows")
        return None
    found: list[tuple[str, str, str]] = []
    for name, pair in value.items():
        domain = reader.convert(name, (*path, str(name)), kinds.domain)
        data = reader.mapping(pair, (*path, str(name)), senders.MICROSOFT_SELECTORS)
        if domain is None or data is None:
            continue
        for selector in senders.MICROSOFT_SELECTORS:
            where = (*path, str(name), selector)
            if data.get(selector) is None:
                reader.fail(where, "is required: Microsoft 365 publishes both selectors (copy both CNAME targets from the admin centre)")
                continue
            target = reader.convert(data[selector], where, kinds.dkim_key_name)
            if target is not None:
                found.append((domain, selector, target))
    return None if reader.has_error(path) else tuple(found)


def check_dkim_targets(reader: ConfigReader, outbound: tuple[Sender, ...] | None, sending_names: tuple[str, ...]) -> None:
    """Microsoft 365's given targets name only the stack's sending names (a typo would
    leave the real name on the formula's targets)."""
    for index, sender in enumerate(outbound or ()):
        for name, selector, target in sender.dkim_targets:
            if name not in sending_names:
                if selector == senders.MICROSOFT_SELECTORS[0]:
                    reader.fail(("outbound", index, "dkim", name), f"is not a sending name of this stack ({', '.join(sending_names)})")
            elif target == dkim.record_name(selector, name):
                reader.fail(("outbound", index, "dkim", name, selector), f"is the CNAME's own name ({target}): give the target it points to, from the admin centre")


def _third_party_key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be the DKIM public key (base64) shown by the provider")
    algorithm, key = dkim.usable_key(kinds.text(value, lines=True))
    bits = dkim.key_bits(key)[1]
    if algorithm == "rsa" and bits > max(dkim.RSA_SIZES):
        raise ValueError(f"RSA key of {bits} bits is over {max(dkim.RSA_SIZES)}: RFC 8301 §3.2 has verifiers validate keys up to 4096 bits only")
    return key
