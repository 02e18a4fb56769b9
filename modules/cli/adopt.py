"""``mailstack adopt``: the ``mailstack:dns.adopt`` import ids for a Cloudflare zone's existing records.

Cloudflare refuses to create a record identical to one in the zone, so a first
``pulumi up`` on a domain that already has some planned records fails unless Pulumi
imports them (the ``import`` resource option with ``<zone_id>/<record_id>``). A zone
export in BIND format carries no record ids; the API's record list does
(``GET /zones/{zone_id}/dns_records``), so this command reads that JSON, plans the stack
against it with the change calculator and prints the adopt mapping for every planned
record that exists already — and for an old record of an exclusive role (an old SPF),
which Pulumi imports and then updates to the planned value. Conflicts no import can
resolve (a CNAME at a planned name) are reported and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from mailstack import plan
from mailstack.cli import options
from mailstack.cli.codes import EXIT_OK, EXIT_USAGE
from mailstack.core import names, txt
from mailstack.core.errors import MailstackError
from mailstack.core.record import Record
from mailstack.plan.changes import Action, ChangeSet, calculate

FORMATS = ("yaml", "json")
_ID = re.compile(r"^[0-9a-f]{32}$")

HELP = """\
Print the mailstack:dns.adopt mapping (record key → Cloudflare import id) for the planned
records that already exist in a Cloudflare zone, so the first `pulumi up` adopts them
instead of failing. FILE is the API's record list, e.g.

  curl -s -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\
    "https://api.cloudflare.com/client/v4/zones/$ZONE_ID/dns_records?per_page=5000" > records.json

(a BIND export has no record ids). Records of an exclusive role that differ (an old SPF)
are listed too: Pulumi imports them, then updates them to the planned value. Exit 0 when
every planned record can be created or adopted, 2 when a conflict remains."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "adopt",
        help="print the mailstack:dns.adopt import ids for records already in a Cloudflare zone",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_stack_arguments(parser)
    parser.add_argument("--cloudflare-records", metavar="FILE", type=Path, required=True, help="the API's DNS record list (JSON)")
    parser.add_argument("--zone-id", metavar="ID", help="the zone's id, when the records do not carry zone_id")
    parser.add_argument("--format", choices=FORMATS, default="yaml", help="output format (default: yaml)")
    parser.set_defaults(handler=run)


def read_records(path: Path, zone_id: str | None) -> list[tuple[Record, str]]:
    """The zone's records with their import ids, from the API's JSON (``{"result": [...]}`` or a list)."""
    text = options.read_text(path, "--cloudflare-records") or ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise MailstackError(f"--cloudflare-records {path}: not JSON ({err})") from err
    items = data.get("result") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise MailstackError(f"--cloudflare-records {path}: expected the API's record list ({{\"result\": [...]}})")
    found = []
    for index, item in enumerate(items):
        try:
            found.append(_record(item, zone_id))
        except (KeyError, TypeError, ValueError) as err:
            raise MailstackError(f"--cloudflare-records {path}: result[{index}]: {err}") from err
    return found


def _record(item: Any, zone_id: str | None) -> tuple[Record, str]:
    if not isinstance(item, dict):
        raise ValueError("not a record object")
    record_id, zone = str(item["id"]), str(item.get("zone_id") or zone_id or "")
    if not _ID.match(record_id):
        raise ValueError(f"id {record_id!r} is not a Cloudflare record id")
    if not _ID.match(zone):
        raise ValueError("no zone_id in the record and no valid --zone-id")
    rdtype, name, content = str(item["type"]).upper(), names.normalize(str(item["name"])), str(item["content"])
    priority = item.get("priority") if rdtype == "MX" else None
    if rdtype == "TXT" and content.startswith('"'):
        content = txt.unquote(content)
    elif rdtype in ("MX", "CNAME", "NS", "PTR"):
        content = names.normalize(content) or "."
    ttl = int(item.get("ttl") or 1)
    return Record(name, rdtype, content, ttl, None if priority is None else int(priority)), f"{zone}/{record_id}"


def run(args: argparse.Namespace) -> int:
    stack = options.load_stack(args)
    if stack.dns.provider != "cloudflare":
        raise MailstackError(f"mailstack adopt is for Cloudflare stacks; this one publishes by {stack.dns.provider} "
                             "(RFC 2136 adopts identical records by itself; see `mailstack plan`)")
    planned = plan.build(stack)
    existing = read_records(args.cloudflare_records, args.zone_id)
    ids = {(r.name, r.type, r.content, r.priority): import_id for r, import_id in existing}
    live: dict[str, list[Record]] = {}
    for record, _ in existing:
        live.setdefault(record.name, []).append(record)
    decided = calculate(planned.records, live, compare_ttl=False)
    adopt: dict[str, str] = {}
    problems: list[str] = []
    for change in decided.changes:
        if change.planned is None or change.live is None:
            continue
        key = (change.live.name, change.live.type, change.live.content, change.live.priority)
        if change.action is Action.ADOPT:
            adopt[change.planned.key] = ids[key]
        elif change.action is Action.CONFLICT and change.live.type == change.planned.type and change.planned.key not in adopt:
            adopt[change.planned.key] = ids[key]
        elif change.action is Action.CONFLICT:
            problems.append(change.note)
    if args.format == "json":
        print(json.dumps({"adopt": adopt, "conflicts": problems}, indent=2))
    else:
        print(render_yaml(adopt, decided))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK


def render_yaml(adopt: dict[str, str], decided: ChangeSet) -> str:
    """The block to put under ``mailstack:dns`` in the stack file, with what each id adopts."""
    if not adopt:
        return "# no planned record exists in the zone yet: nothing to adopt"
    notes = {c.planned.key: c for c in decided.changes if c.planned is not None and c.planned.key in adopt}
    lines = ["# under mailstack:dns in the stack file:", "adopt:"]
    for key in sorted(adopt):
        change = notes[key]
        replaced = change.live.value if change.live is not None else ""
        what = "exists as planned" if change.action is Action.ADOPT else f"replaces {replaced!r}: imported, then updated"
        lines.append(f"  {key}: {adopt[key]}  # {what}")
    return "\n".join(lines)
