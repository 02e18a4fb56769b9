"""The RFC 2136 side of the record plan: one ``Rfc2136ZoneRecords`` holding every planned record.

The on-premise twin of ``mailstack.providers.cloudflare``: a ComponentResource
(``mailstack:dns:Rfc2136Records``) owns one dynamic resource with the whole plan, because
the provider decides all writes before the first one (``mailstack.rfc2136.sync``): a
conflict anywhere stops the change everywhere, at preview already. The gateway's DKIM
value waits for the generated key as one list element, so the rest of the plan is known
(and checked against the live zones) during the first preview. The resource is
protected while it holds mail-critical records (``mailstack.rules.protection``, as on
Cloudflare) unless ``mailstack:dns.allowDelete`` is set; inside it, dropping the last MX,
SPF, DKIM or DMARC record of a name is refused by the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi

from mailstack.core.record import Record
from mailstack.providers.rfc2136 import Rfc2136ZoneRecords
from mailstack.rfc2136.resource import record_map
from mailstack.rules import dkim, protection


@dataclass(frozen=True)
class Rfc2136RecordsArgs:
    """The records, their zones, the server and TSIG key, and the gateway DKIM key."""

    records: Sequence[Record]
    #: Zone name for each record name (``MailDomain.dns.zone_of``).
    zones: dict[str, str]
    server: str
    port: int
    tsig_key_name: str
    tsig_algorithm: str
    #: The TSIG secret (``mailstack:tsigSecret``), a Pulumi secret.
    tsig_secret: pulumi.Input[str]
    #: The gateway's DKIM public key (PEM), for records with ``needs_gateway_key``.
    gateway_public_key_pem: pulumi.Input[str] | None = None
    #: During a DKIM rotation: the previous selector and its key (PEM), for its records.
    previous_selector: str | None = None
    previous_public_key_pem: pulumi.Input[str] | None = None
    allow_delete: bool = False
    #: ``mailstack:dns.adopt``: planned record key → the live value mailstack takes over.
    adopt: Mapping[str, str] = field(default_factory=dict)


def _item(zone: str, record: Record, pem: pulumi.Input[str] | None) -> dict[str, Any]:
    """One record of the resource; a DKIM key record's value waits for the generated key."""
    if not record.needs_gateway_key:
        return record_map(zone, record)
    if pem is None:
        raise ValueError(f"{record.name}: the gateway DKIM key is needed but was not given")
    item: dict[str, Any] = {"zone": zone, "name": record.name, "type": record.type, "ttl": record.ttl}

    def fill(pem_text: str) -> str:
        return str(record_map(zone, replace(record, content=dkim.txt_value(pem_text), needs_gateway_key=False))["value"])

    item["value"] = pulumi.Output.from_input(pem).apply(fill)
    return item


def _key_for(args: Rfc2136RecordsArgs, record: Record) -> pulumi.Input[str] | None:
    """The public key a gateway key record carries: the previous selector's during a
    rotation, else the gateway's."""
    if args.previous_selector and dkim.selector_of(record.name) == args.previous_selector:
        return args.previous_public_key_pem
    return args.gateway_public_key_pem


class Rfc2136Records(pulumi.ComponentResource):
    """Every planned record of one stack on an RFC 2136 primary, as one resource."""

    records: Rfc2136ZoneRecords

    def __init__(self, name: str, args: Rfc2136RecordsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailstack:dns:Rfc2136Records", name, None, opts)
        ordered = sorted(args.records, key=lambda r: (args.zones[r.name], r.name, r.type, r.value))
        protect = any(protection.should_protect(r, args.allow_delete) for r in args.records)
        self.records = Rfc2136ZoneRecords(
            f"{name}-rfc2136",
            server=args.server,
            port=args.port,
            zones=sorted(set(args.zones[r.name] for r in args.records)),
            records=[_item(args.zones[r.name], r, _key_for(args, r)) for r in ordered],
            tsig_key_name=args.tsig_key_name,
            tsig_algorithm=args.tsig_algorithm,
            tsig_secret=args.tsig_secret,
            adopt=dict(args.adopt),
            allow_delete=args.allow_delete,
            # The DKIM rotation's guard (depends_on) must pass before this update.
            opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=opts.depends_on if opts else None),
        )
        self.register_outputs({"recordsId": self.records.id})
