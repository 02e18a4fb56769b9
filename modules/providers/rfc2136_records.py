"""The RFC 2136 side of the record plan: one ``Rfc2136Record`` per planned record set.

The on-premise twin of ``mailstack.providers.cloudflare``: a ComponentResource
(``mailstack:dns:Rfc2136Records``) owns one dynamic resource per record set, named
after the set (type and name) so reordering the plan never replaces one. Address
records are created before everything else because BIND refuses an MX whose in-zone
target has no address yet. Mail-critical sets are protected like on Cloudflare
(``mailstack.rules.protection``), unless ``mailstack:dns.allowDelete`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pulumi

from mailstack.core.record import Record
from mailstack.providers.rfc2136 import Rfc2136Record
from mailstack.rfc2136.recordset import address_first, rdata_values, record_sets
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
    allow_delete: bool = False


def _values(records: list[Record], pem: pulumi.Input[str] | None) -> pulumi.Input[list[pulumi.Input[str]]]:
    """The set's values; a DKIM key record waits for the generated public key."""
    if not any(r.needs_gateway_key for r in records):
        return list(rdata_values(records))
    if pem is None:
        raise ValueError(f"{records[0].name}: the gateway DKIM key is needed but was not given")

    def fill(pem_text: str) -> list[pulumi.Input[str]]:
        filled = [
            replace(r, content=dkim.txt_value(pem_text), needs_gateway_key=False) if r.needs_gateway_key else r
            for r in records
        ]
        return list(rdata_values(filled))

    return pulumi.Output.from_input(pem).apply(fill)


class Rfc2136Records(pulumi.ComponentResource):
    """Every planned record set of one stack on an RFC 2136 primary."""

    records: dict[str, Rfc2136Record]

    def __init__(self, name: str, args: Rfc2136RecordsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailstack:dns:Rfc2136Records", name, None, opts)
        sets = record_sets(args.records)
        self.records = {}
        addresses: list[pulumi.Resource] = []
        for key in sorted(sets, key=address_first):
            members = sets[key]
            rrname, rdtype = key
            resource_key = f"{rdtype.lower()}-{rrname}"
            protect = any(protection.should_protect(r, args.allow_delete) for r in members)
            resource = Rfc2136Record(
                f"{name}-{resource_key}",
                server=args.server,
                port=args.port,
                zone=args.zones[rrname],
                name=rrname,
                type=rdtype,
                ttl=min(r.ttl for r in members),
                values=_values(members, args.gateway_public_key_pem),
                tsig_key_name=args.tsig_key_name,
                tsig_algorithm=args.tsig_algorithm,
                tsig_secret=args.tsig_secret,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    protect=protect,
                    depends_on=[] if address_first(key) == 0 else list(addresses),
                ),
            )
            if address_first(key) == 0:
                addresses.append(resource)
            self.records[resource_key] = resource
        self.register_outputs({"recordIds": {key: r.id for key, r in self.records.items()}})
