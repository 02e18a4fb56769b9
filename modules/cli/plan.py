"""``mailstack plan``: the whole change an apply would make, decided before anything is written.

The same change calculator (``mailstack.plan.changes``) the RFC 2136 provider runs at
``pulumi preview`` and the lab runs before it writes, against what is live now: on an
RFC 2136 stack the zones as the primary transfers them (TSIG), or with ``--nameserver``
(and on Cloudflare) what plain DNS answers at the names the plan touches. Exit 0 when
nothing would change, 1 when something would be written, 2 on a conflict with records
mailstack does not own (each named, with the ways out) or an error.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mailstack import plan
from mailstack.checks.dns import published
from mailstack.checks.dns.resolver import Resolver
from mailstack.cli import options, rotation
from mailstack.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mailstack.core import tsig
from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.plan import cloudflare
from mailstack.plan.changes import Action, Change, ChangeSet, calculate
from mailstack.rfc2136 import resource, sync

FORMATS = ("text", "json")
SECRET_ENV = "MAILSTACK_TSIG_SECRET"
#: The order actions are listed and counted in.
SHOWN = (Action.CONFLICT, Action.DELETE, Action.UPDATE, Action.CREATE, Action.ADOPT, Action.UNMANAGED)

HELP = f"""\
Decide the change an apply would make against what is live now, and print it: records to
create, update or delete, live records taken over as they are (adopt), conflicts with
records mailstack does not own (a foreign SPF where the stack plans one, a CNAME at a
planned name), and the unmanaged records at the names the plan touches (left alone).

On an RFC 2136 stack the zones are read from mailstack:dns.server by a TSIG-signed zone
transfer; the secret comes from --tsig-secret-file or ${SECRET_ENV}. With --nameserver,
and on Cloudflare, the names are asked by plain DNS. --owned names the records mailstack
wrote before (e.g. `pulumi stack output records --json`); without it nothing live is
taken for mailstack's, so a changed SPF shows as a conflict.

Exit status: 0 nothing to change, 1 changes, 2 conflicts or errors."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "plan",
        help="decide the change against live DNS: create/update/delete/conflict (nothing written)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_stack_arguments(parser)
    options.add_dns_arguments(parser, wait=False)
    parser.add_argument("--dkim-public-key", metavar="PEM", type=Path, help="the gateway's DKIM public key (PEM file)")
    rotation.add_arguments(parser)
    options.add_owned_argument(parser)
    parser.add_argument("--tsig-secret-file", metavar="FILE", type=Path, help=f"RFC 2136: the TSIG secret (default: ${SECRET_ENV})")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stack = options.load_stack(args)
    planned = plan.build(stack, options.gateway_public_key(args.dkim_public_key), rotation.previous_key(args))
    state = rotation.read_state(args.dkim_rotation)  # a broken file stops the run before any query
    owned = options.owned_records(args.owned)
    live, source, exact = _live(args, stack, planned, owned)
    planned = rotation.with_rotation(planned, state, _nameservers(args), args.timeout)
    rfc2136 = stack.dns.provider == "rfc2136"
    decided = calculate(
        planned.records, live, owned,
        adopt=dict(stack.dns.adopt) if rfc2136 else None, allow_delete=stack.dns.allow_delete, compare_ttl=exact,
    )
    if not rfc2136:
        decided = cloudflare.refine(decided, dict(stack.dns.adopt))
    name = args.stack or str(args.stack_file)
    if args.format == "json":
        print(render_json(name, source, decided, rotation.as_json(planned.rotation)))
    else:
        print("\n".join([render_text(name, source, decided), *rotation.lines(stack, planned.rotation)]))
    if decided.conflicts:
        return EXIT_USAGE
    return EXIT_FAILED if decided.changed else EXIT_OK


def _live(args: argparse.Namespace, stack: MailDomain, planned: plan.Plan, owned: list[Record]) -> tuple[dict[str, list[Record]], str, bool]:
    """What is live at the names the change touches, where it was read, and whether
    the read is the zone itself (exact TTLs) rather than answers."""
    if args.nameserver or stack.dns.provider != "rfc2136":
        try:
            resolver = Resolver.from_strings(args.nameserver, args.timeout)
        except ValueError as err:
            raise MailstackError(f"--nameserver: {err}") from err
        live, errors = published.fetch_names(resolver, planned.records, owned)
        if errors:
            raise MailstackError("cannot read what is live, so no change can be decided: " + "; ".join(str(e) for e in errors[:5]))
        return live, ", ".join(str(s) for s in resolver.servers) or "the system resolver", False
    server = resource.server_of({
        "server": stack.dns.server, "port": stack.dns.port, "tsigKeyName": stack.dns.tsig_key_name,
        "tsigAlgorithm": stack.dns.tsig_algorithm, resource.SECRET_KEY: _tsig_secret(args),
    })
    zones = {planned.zone_of(r.name) for r in [*planned.records, *owned]}
    snapshots = sync.read(server, zones)
    return {k: list(v) for k, v in sync.live_records(snapshots.values()).items()}, f"{server.where} (zone transfer)", True


def _nameservers(args: argparse.Namespace) -> list[tuple[str, int]]:
    try:
        return [(s.address, s.port) for s in Resolver.from_strings(args.nameserver, args.timeout).servers]
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err


def _tsig_secret(args: argparse.Namespace) -> str:
    secret = options.read_text(args.tsig_secret_file, "--tsig-secret-file") if args.tsig_secret_file else os.environ.get(SECRET_ENV)
    if not secret or not tsig.valid_secret(secret.strip()):
        raise MailstackError(
            f"reading the zones by transfer needs the TSIG secret (base64, as tsig-keygen prints it): --tsig-secret-file "
            f"FILE or ${SECRET_ENV} (`pulumi config get mailstack:tsigSecret`), or ask plain DNS with --nameserver"
        )
    return secret.strip()


def _value(record: Record | None) -> str:
    return repr(record.value) if record is not None else ""


def _line(change: Change) -> str:
    text = f"  {change.action.value:<9} {change.name} {change.type} "
    if change.action is Action.UPDATE:
        text += f"{_value(change.live)} → {_value(change.planned)}"
    else:
        text += _value(change.planned if change.planned is not None and change.action is not Action.CONFLICT else change.live)
    if change.note:
        text += f"\n            {change.note}"
    return text


def render_text(stack: str, source: str, decided: ChangeSet) -> str:
    """Every change but the unchanged records, conflicts first, then the counts."""
    lines = [f"plan for stack {stack} against {source}:"]
    for action in SHOWN:
        lines += [_line(c) for c in decided.of(action)]
    counts = decided.counts()
    lines.append(
        f"  {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete, "
        f"{counts['adopt']} to adopt, {counts['same']} unchanged, {counts['conflict']} conflicts, "
        f"{counts['unmanaged']} unmanaged (not mailstack's, left alone)"
    )
    if decided.conflicts:
        lines.append("nothing may be written while a conflict remains: resolve each as its note says, then plan again")
    return "\n".join(lines)


def render_json(stack: str, source: str, decided: ChangeSet, dkim_rotation: dict[str, Any] | None = None) -> str:
    """The documented JSON shape (docs/records.md); ``dkimRotation`` while one runs."""
    return json.dumps({
        "stack": stack,
        "source": source,
        "changed": decided.changed,
        "conflicts": len(decided.conflicts),
        "counts": decided.counts(),
        "changes": [c.as_json() for c in decided.changes],
        **({"dkimRotation": dkim_rotation} if dkim_rotation else {}),
    }, indent=2)
