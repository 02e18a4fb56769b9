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
from mailstack.rules import dkim, spf

_SENDER_FIELDS: dict[str, tuple[str, ...]] = {
    "odoo": ("type",),
    "gateway": ("type",),
    "mailjet": ("type", "dkimKey", "dkimSelector"),
    "google": ("type", "dkimKey", "dkimSelector"),
    "microsoft": ("type", "tenant"),
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
        return Sender(sender_kind, tenant=tenant) if tenant else None
    if sender_kind in (SenderKind.GOOGLE, SenderKind.MAILJET):
        key = None
        if data.get("dkimKey") is not None:
            key = reader.convert(data["dkimKey"], (*path, "dkimKey"), _third_party_key, lines=True)
        selector = None
        if data.get("dkimSelector") is not None:
            selector = reader.convert(data["dkimSelector"], (*path, "dkimSelector"), kinds.label)
        return Sender(sender_kind, dkim_key=key, dkim_selector=selector)
    return Sender(sender_kind)


def _third_party_key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be the DKIM public key (base64) shown by the provider")
    algorithm, key = dkim.usable_key(kinds.text(value, lines=True))
    bits = dkim.key_bits(key)[1]
    if algorithm == "rsa" and bits > max(dkim.RSA_SIZES):
        raise ValueError(f"RSA key of {bits} bits is over {max(dkim.RSA_SIZES)}: RFC 8301 §3.2 has verifiers validate keys up to 4096 bits only")
    return key
