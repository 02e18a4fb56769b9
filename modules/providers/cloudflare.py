"""The Cloudflare side of the record plan: one ``cloudflare.DnsRecord`` per planned record.

A ComponentResource (``mailstack:dns:CloudflareRecords``) owns every record; each child
is named after the record's stable key so that reordering the plan never replaces a
record. Records are DNS-only (never proxied: mail does not go through Cloudflare's
proxy), carry a comment marking them as mailstack's, and the mail-critical ones (MX,
SPF, DKIM, DMARC: ``mailstack.rules.protection``, the same rule as on RFC 2136) are
protected so a ``pulumi destroy`` cannot silently stop or break the domain's mail.

Cloudflare refuses to create a record identical to one already in the zone, so a domain
that already has (some of) the planned records adopts them: ``mailstack:dns.adopt`` maps
a record key to the existing record's import id and the record is registered with
Pulumi's ``import`` option (``mailstack adopt`` writes that mapping from the zone's
record list; docs/records.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_cloudflare as cloudflare

from mailstack.core import txt
from mailstack.core.record import Record
from mailstack.rules import dane, dkim, protection

COMMENT = "managed by mailstack"


def cloudflare_content(record: Record) -> str:
    """The content Cloudflare stores for a record: TXT quoted and split (else a diff
    shows on every run), names as given (Cloudflare takes names without trailing dot)."""
    if record.type == "TXT":
        return txt.quoted(record.content)
    return record.content


def tlsa_data(record: Record) -> cloudflare.DnsRecordDataArgs:
    """A TLSA record as Cloudflare's ``data`` block (``mailstack.rules.dane`` parses it)."""
    usage, selector, mtype, certificate = dane.parse(record.content)
    return cloudflare.DnsRecordDataArgs(usage=usage, selector=selector, matching_type=mtype, certificate=certificate)


@dataclass(frozen=True)
class CloudflareRecordsArgs:
    """The records to publish, the zones they live in, and the gateway DKIM key."""

    records: Sequence[Record]
    #: Zone name for each record name (``MailDomain.dns.zone_of``), resolved per record.
    zones: dict[str, str]
    #: The gateway's DKIM public key (PEM), for records with ``needs_gateway_key``.
    gateway_public_key_pem: pulumi.Input[str] | None = None
    #: During a DKIM rotation: the previous selector and its key (PEM), for its records.
    previous_selector: str | None = None
    previous_public_key_pem: pulumi.Input[str] | None = None
    #: ``mailstack:dns.allowDelete``: register mail records unprotected so a later change may delete them.
    allow_delete: bool = False
    #: ``mailstack:dns.adopt``: record key → Cloudflare import id (``<zone_id>/<record_id>``)
    #: of an existing record to adopt (Pulumi's ``import`` option) instead of creating it.
    adopt: Mapping[str, str] = field(default_factory=dict)


class CloudflareRecords(pulumi.ComponentResource):
    """Every planned record of one stack on Cloudflare."""

    zone_ids: dict[str, pulumi.Output[str]]
    records: dict[str, cloudflare.DnsRecord]

    def __init__(self, name: str, args: CloudflareRecordsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailstack:dns:CloudflareRecords", name, None, opts)
        # Every record waits for what the component waits for (the DKIM rotation's guard).
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)
        self.zone_ids = {
            zone: cloudflare.get_zone_output(
                filter={"name": zone, "match": "all"}, opts=pulumi.InvokeOutputOptions(parent=self)
            ).zone_id
            for zone in sorted(set(args.zones.values()))
        }
        self.records = {}
        for record in args.records:
            content: pulumi.Input[str] = cloudflare_content(record)
            if record.needs_gateway_key:
                previous = bool(args.previous_selector) and dkim.selector_of(record.name) == args.previous_selector
                pem = args.previous_public_key_pem if previous else args.gateway_public_key_pem
                if pem is None:
                    raise ValueError(f"{record.name}: the gateway DKIM key is needed but was not given")
                content = pulumi.Output.from_input(pem).apply(
                    lambda pem: txt.quoted(dkim.txt_value(pem))
                )
            # Cloudflare takes TLSA as structured data, its content is derived from it.
            data = tlsa_data(record) if record.type == "TLSA" else None
            self.records[record.key] = cloudflare.DnsRecord(
                f"{name}-{record.key}",
                zone_id=self.zone_ids[args.zones[record.name]],
                name=record.name,
                type=record.type,
                content=None if data else content,
                data=data,
                ttl=record.ttl,
                priority=record.priority,
                proxied=False,
                comment=COMMENT,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                    protect=protection.should_protect(record, args.allow_delete),
                    import_=args.adopt.get(record.key),
                )),
            )
        self.register_outputs(
            {
                "zoneIds": self.zone_ids,
                "recordIds": {key: r.id for key, r in self.records.items()},
            }
        )
