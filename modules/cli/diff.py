"""``mailstack diff``: the record plan against what DNS really serves.

Like ``pulumi preview --expect-no-changes``, but against the answers resolvers get
rather than Pulumi's state: a record edited by hand in the Cloudflare dashboard, a
second SPF someone added, a stale DKIM key, or a secondary that never got the new
zone all show here. Exit 0 when live equals declared, 1 on drift, 2 on error (bad
arguments or config, or a server that could not be asked: the diff is incomplete).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from mailstack import plan
from mailstack.checks.dns.diff import ServerDiff, WaitResult, diff, wait_for_stack
from mailstack.checks.dns.published import Change, RecordDiff
from mailstack.checks.dns.resolver import Resolver
from mailstack.cli import options, rotation
from mailstack.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mailstack.core.errors import MailstackError

FORMATS = ("text", "json")

HELP = """\
Compare the records planned for a stack with what DNS serves for the same names:
missing records, records with other content (both values shown), extra records (one
that conflicts with the plan, like a second SPF record, or one of mailstack's that the
stack no longer declares: --owned names them), and unmanaged records (someone else's
beside the planned ones: shown, never drift). DNS cannot list a zone's names, so only
known DKIM selector names are looked at besides the planned ones (see docs/ci-gate.md).

Without --wait the names are asked through --nameserver (or the system resolver). With
--wait SECONDS each authoritative server of the stack's zones (their NS records, or the
--nameserver servers) is asked on its own, again and again, until all of them serve the
plan or the deadline passes: run it right after `pulumi up`.

Exit status: 0 live equals declared, 1 drift, 2 error."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "diff",
        help="compare the planned records with live DNS (drift detection)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_stack_arguments(parser)
    options.add_dns_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--dkim-public-key", metavar="PEM", type=Path, help="the gateway's DKIM public key (PEM file), to compare its content too")
    rotation.add_arguments(parser)
    options.add_owned_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stack = options.load_stack(args)
    planned = plan.build(stack, options.gateway_public_key(args.dkim_public_key), rotation.previous_key(args))
    state = rotation.read_state(args.dkim_rotation)  # a broken file stops the run before any query
    owned = options.owned_records(args.owned)
    if args.wait is None:
        try:
            resolver = Resolver.from_strings(args.nameserver, args.timeout)
        except ValueError as err:
            raise MailstackError(f"--nameserver: {err}") from err
        label = ", ".join(str(s) for s in resolver.servers) or "the system resolver"
        results = [ServerDiff(label, tuple(diff(planned, resolver, owned)))]
        outcome = WaitResult(results, 1, all(r.agrees for r in results))
    else:
        outcome = wait_for_stack(planned, args.nameserver, args.wait, timeout=args.timeout, interval=args.interval, owned=owned)
    try:
        servers = [(s.address, s.port) for s in Resolver.from_strings(args.nameserver, args.timeout).servers]
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err
    planned = rotation.with_rotation(planned, state, servers, args.timeout)
    name = args.stack or str(args.stack_file)
    if args.format == "json":
        print(render_json(name, outcome, args.wait, rotation.as_json(planned.rotation)))
    else:
        print("\n".join([render_text(name, outcome, args.wait), *rotation.lines(stack, planned.rotation)]))
    return exit_code(outcome.results)


def exit_code(results: list[ServerDiff]) -> int:
    """2 when any query failed (the diff is incomplete), 1 on drift, else 0."""
    if any(r.errors for r in results):
        return EXIT_USAGE
    if any(r.drift for r in results):
        return EXIT_FAILED
    return EXIT_OK


def _line(item: RecordDiff) -> str:
    label = "error" if item.change is Change.UNKNOWN else item.change.value
    text = f"  {label:<9} {item.name} {item.type}"
    if item.declared is not None:
        text += f"\n            declared: {item.declared.value}"
    for live in item.live:
        text += f"\n            live:     {live.value}"
    if item.note:
        text += f"\n            ({item.note})"
    return text


def render_text(stack: str, outcome: WaitResult, wait: float | None) -> str:
    """Differences only, per server, then a count of every kind of change."""
    lines: list[str] = []
    for result in outcome.results:
        lines.append(f"stack {stack} against {result.server}:")
        lines += [_line(d) for d in result.diffs if d.change not in (Change.SAME, Change.PRESENT)]
        counts = Counter("error" if d.change is Change.UNKNOWN else d.change.value for d in result.diffs)
        same = counts["same"] + counts["present"]
        lines.append(
            f"  {same} as declared, {counts['missing']} missing, {counts['different']} different, "
            f"{counts['extra']} extra, {counts['error']} errors; {counts['unmanaged']} unmanaged (not mailstack's, left alone)"
        )
    if wait is not None:
        verdict = "all servers serve the plan" if outcome.agreed else f"servers still differ after {wait:g}s"
        lines.append(f"{verdict} ({outcome.polls} polls)")
    return "\n".join(lines)


def _diff_json(item: RecordDiff) -> dict[str, Any]:
    return {
        "change": "error" if item.change is Change.UNKNOWN else item.change.value,
        "name": item.name,
        "type": item.type,
        "declared": item.declared.as_json() if item.declared else None,
        "live": [r.as_json() for r in item.live],
        "note": item.note,
    }


def render_json(stack: str, outcome: WaitResult, wait: float | None, dkim_rotation: dict[str, Any] | None = None) -> str:
    """The documented JSON shape (docs/ci-gate.md); ``dkimRotation`` while one runs."""
    document = {
        "stack": stack,
        "equal": all(r.agrees for r in outcome.results),
        "wait": wait,
        "polls": outcome.polls,
        "servers": [
            {"server": r.server, "equal": r.agrees, "records": [_diff_json(d) for d in r.diffs]} for r in outcome.results
        ],
    }
    if dkim_rotation:
        document["dkimRotation"] = dkim_rotation
    return json.dumps(document, indent=2)
