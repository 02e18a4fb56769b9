"""``mailstack lab up|check|status|down``: any stack's whole mail path on loopback.

The host side checks root and packages and creates the network namespace; then the
command re-executes itself inside the namespace (``ip netns exec``), where it starts
the servers, publishes the records through the RFC 2136 provider's operations, and
runs the check suite (``lab check`` takes ``mailstack check``'s output options and exit
codes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from mailstack import plan as planning
from mailstack.cli import options
from mailstack.cli import rotation as cli_rotation
from mailstack.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mailstack.config import stackfile
from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain
from mailstack.lab import control, rotation, seed, translate
from mailstack.lab.binaries import binary
from mailstack.lab.state import LabState
from mailstack.lab.topology import DEFAULT_NAMESPACE, DEFAULT_STATE_DIR, Topology
from mailstack.lab.topology import build as build_topology
from mailstack.plan.changes import Action
from mailstack.rules import dkim_rotation
from mailstack.rfc2136.sync import ConflictError

DEFAULT_STACK = "lab"
FORMATS = ("text", "json", "junit", "sarif")
#: Exit code of ``lab up`` inside the namespace when the plan conflicts with the seeded
#: zones: the host side then keeps BIND up (and says so) instead of tearing it down.
INSIDE_CONFLICT = 3
#: The order ``lab up`` reports its record changes in.
REPORTED = (Action.CREATE, Action.UPDATE, Action.DELETE, Action.ADOPT, Action.SAME, Action.UNMANAGED)

HELP = """\
Rehearse a stack's whole mail path on this machine, in a private network namespace on
loopback only: BIND (the stack's zones, published by RFC 2136 with TSIG whatever
dns.provider says), one gateway per declared gateway host (Postfix + OpenDKIM rendered
from the stack, the mailgate), an Odoo XML-RPC stand-in, the third parties the stack
sends through (simulated), MTA-STS policy hosts, and an independent receiver (Postfix,
policyd-spf, OpenDKIM, OpenDMARC) whose headers give the verdicts. Every declared
address is mapped to a loopback address of the namespace (`lab status` shows how).
Needs root. `lab check` runs the full check suite, end-to-end probes included."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("lab", help="run the whole mail path locally and check it", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR), help="where the lab keeps state (default: %(default)s)")
        sub.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="network namespace name (default: %(default)s)")

    up = actions.add_parser("up", help="start the lab (idempotent)")
    options.add_stack_arguments(up, required=False)
    up.add_argument("--seed-zone", metavar="FILE", type=Path, action="append", default=[],
                    help="load this BIND zone file (an export of the real zone) into the lab before the plan is applied (repeatable)")
    up.add_argument("--dnssec", action="store_true",
                    help="BIND signs every lab zone (dnssec-policy) and the gateways get TLSA records of their key (DANE); "
                         "`lab check` validates from the zones' DS")
    common(up)
    up.set_defaults(handler=run_up)

    check = actions.add_parser("check", help="run the check suite, e2e probes included, against the lab")
    common(check)
    check.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    check.add_argument("--output", metavar="FILE", type=Path, help="write the report to FILE instead of stdout")
    check.add_argument("--only", metavar="GROUP", action="append", default=[], help="run only this check group (repeatable)")
    check.add_argument("--disable", metavar="ID", action="append", default=[], help="skip this check id (repeatable)")
    check.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    check.add_argument("--verbose", action="store_true", help="text: show details of passing checks too")
    check.add_argument("--deadline", type=float, default=180.0, help="seconds for the whole run (default: %(default)s)")
    check.add_argument("--timeout", type=float, help="seconds per DNS query (default: mailstack check's)")
    check.add_argument("--workers", type=int, help="checks run at once (default: mailstack check's)")
    check.add_argument("--probe-wait", type=float, default=60.0, help="seconds an e2e probe may take to arrive (default: %(default)s)")
    check.set_defaults(handler=run_check)

    status = actions.add_parser("status", help="show the lab's processes and records")
    common(status)
    status.set_defaults(handler=run_status)

    down = actions.add_parser("down", help="stop every lab process and delete the namespace")
    common(down)
    down.add_argument("--purge", action="store_true", help="also delete the state directory (keys included)")
    down.set_defaults(handler=run_down)


def _stack_file(args: argparse.Namespace) -> Path:
    if getattr(args, "stack_file", None) or getattr(args, "stack", None):
        return options.stack_file_of(args).resolve()
    path = options.project_of(args).stack_path(DEFAULT_STACK)
    if not path.is_file():
        raise MailstackError(f"the project has no lab stack {path}: name one with --stack-file or --stack")
    return path


def _reexec(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``mailstack lab <argv>`` inside the namespace; its exit code is ours."""
    env = {**os.environ, control.INSIDE_ENV: args.namespace}
    command = [binary("ip"), "netns", "exec", args.namespace, sys.executable, "-m", "mailstack.cli", "lab", *argv,
               "--state-dir", str(args.state_dir.resolve()), "--namespace", args.namespace]
    return subprocess.run(command, env=env).returncode


def _recorded_stack(state_dir: Path) -> Path:
    state = LabState.load(state_dir)
    if not state.stack_file or not state.processes:
        raise MailstackError(f"no lab is up in {state_dir}: run `mailstack lab up` first")
    return Path(state.stack_file)


def _seeds(args: argparse.Namespace, stack_plan: planning.Plan) -> tuple[seed.Seed, ...]:
    """The --seed-zone files, parsed and checked against the plan (SeedError: exit 2)."""
    seeds = tuple(seed.load(Path(path).resolve()) for path in args.seed_zone)
    seed.check(seeds, stack_plan)
    return seeds


def _digest(seeds: tuple[seed.Seed, ...]) -> tuple[str, ...]:
    return tuple(f"{s.path} {hashlib.sha256(s.path.read_bytes()).hexdigest()}" for s in seeds)


def run_up(args: argparse.Namespace) -> int:
    stack_file = _stack_file(args)
    stack = stackfile.load(stack_file)
    topology = build_topology(stack, args.namespace)
    seeds = _seeds(args, planning.build(stack))
    if control.inside(args.namespace):
        return _up_inside(args, stack, topology, seeds)
    started = time.monotonic()
    # Dropping dkim.previous before the recorded retire time changes nothing: refused
    # before the lab is touched (as `pulumi up` fails at the dkim-rotation resource).
    dkim_rotation.refuse_early_retire(stack, rotation.read(rotation.state_path(args.state_dir.resolve(), stack_file)), time.time())
    prepared = control.prepare(args.state_dir, topology, stack_file, _digest(seeds), dnssec=args.dnssec)
    code = _reexec(args, ["up", "--stack-file", str(stack_file), *(f"--seed-zone={s.path}" for s in seeds), *(["--dnssec"] if args.dnssec else [])])
    if code == INSIDE_CONFLICT and (prepared.running or prepared.repair):
        print(f"the lab in namespace {args.namespace} keeps running, nothing of the plan written", file=sys.stderr)
        return EXIT_USAGE
    if code == INSIDE_CONFLICT:
        print(f"the lab's BIND is left up in namespace {args.namespace} with the zones exactly as seeded, nothing of "
              "the plan written: inspect them (ip netns exec … dig), then `mailstack lab down`", file=sys.stderr)
        return EXIT_USAGE
    if code != EXIT_OK:
        control.down(args.state_dir, args.namespace)
        print(f"error: the lab did not come up (exit {code} inside the namespace); everything it started was stopped", file=sys.stderr)
        return EXIT_USAGE
    print(("lab was already up" if prepared.running else "lab is up") + f" in namespace {args.namespace} ({time.monotonic() - started:.1f}s)")
    _print_roles(args.state_dir, topology)
    return EXIT_OK


def _up_inside(args: argparse.Namespace, stack: MailDomain, topology: Topology, seeds: tuple[seed.Seed, ...]) -> int:
    """Inside the namespace: start or repair the roles and publish the records."""
    lab = control.make_lab(args.state_dir, stack, topology, seeds)
    try:
        if lab.state.processes:
            restarted = control.repair(lab)
            if restarted:
                print(f"restarted: {', '.join(restarted)}")
        else:
            control.start(lab)
    except ConflictError as err:
        print(f"error: {err}", file=sys.stderr)
        return INSIDE_CONFLICT
    assert lab.changes is not None
    rotation.record(rotation.path_of(lab.state), lab.plan)  # after everything succeeded: the switch time, once
    counts = lab.changes.counts()
    print(f"records on {topology.bind_address}: " + ", ".join(f"{counts[a.value]} {a.value}" for a in REPORTED if counts[a.value]))
    for line in cli_rotation.lines(lab.plan.stack, lab.plan.rotation):
        print(line)
    return EXIT_OK


def _role_host(role: str, topology: Topology) -> str:
    """The addresses of the host a process serves (for the process table)."""
    for host in topology.of_role("gateway"):
        if role.startswith(f"gateway-{host.name}-"):
            return " ".join(host.addresses)
    single = {"bind": topology.bind, "odoo": topology.odoo}
    if role in single:
        return " ".join(single[role].addresses)
    if role.startswith("receiver-"):
        return " ".join(a for h in (*topology.of_role("receiver"), *topology.of_role("mailbox")) for a in h.addresses)
    others = {"services": "sender", "mta-sts": "mta-sts"}
    return " ".join(a for h in topology.of_role(others.get(role, role)) for a in h.addresses)


def _print_roles(state_dir: Path, topology: Topology) -> None:
    for process, alive in control.processes(state_dir):
        print(f"  {process.role:<40} pid {process.pid:<8} {'running' if alive else 'NOT RUNNING':<12} {_role_host(process.role, topology)}"[:220])


def _print_topology(topology: Topology, stack_notes: list[str]) -> None:
    print("hosts (lo of the namespace; every name has A/AAAA and PTR):")
    for host in topology.hosts:
        print(f"  {host.name:<45} {' '.join(host.addresses):<40} {host.label}")
    if topology.mapped:
        print("declared addresses and the lab's in their place (the lab plans with these: SPF, A/AAAA, mynetworks):")
        for mapped in topology.mapped:
            print(f"  {mapped.key:<40} {mapped.declared:<28} -> {mapped.lab}")
    for number, term in topology.unsimulated:
        print(f"  raw SPF sender {number}: {term} is not simulated (the lab sends as ip4:, ip6:, a: and include: terms)")
    for note in stack_notes:
        print(f"  {note}")


def run_check(args: argparse.Namespace) -> int:
    stack_file = _recorded_stack(args.state_dir)
    if not control.inside(args.namespace):
        control.preflight()
        argv = ["check", "--format", args.format, "--deadline", str(args.deadline), "--probe-wait", str(args.probe_wait)]
        argv += [f"--only={g}" for g in args.only] + [f"--disable={i}" for i in args.disable]
        argv += ["--strict"] * args.strict + ["--verbose"] * args.verbose
        argv += [f"--timeout={args.timeout}"] * (args.timeout is not None) + [f"--workers={args.workers}"] * (args.workers is not None)
        if args.output:
            argv += ["--output", str(args.output.resolve())]
        return _reexec(args, argv)
    from mailstack.lab import checking

    return checking.run(args, stack_file)


def run_status(args: argparse.Namespace) -> int:
    if control.inside(args.namespace):
        state = LabState.load(args.state_dir)
        stack = stackfile.load(Path(state.stack_file))
        lab = control.make_lab(args.state_dir, stack, build_topology(stack, args.namespace))
        for record, served in control.live_records(lab):
            print(f"  {'served' if served else 'ABSENT':<7} {record.name} {record.type} {record.value}"[:200])
        return EXIT_OK
    control.preflight()
    state = LabState.load(args.state_dir)
    if not state.processes:
        print(f"no lab is up in {args.state_dir}")
        return EXIT_FAILED
    stack = stackfile.load(Path(state.stack_file))
    topology = build_topology(stack, args.namespace)
    print(f"lab in namespace {args.namespace}, stack {state.stack_file}, state {state.stack_root}")
    _print_roles(args.state_dir, topology)
    _print_topology(topology, translate.substitutions(stack))
    healthy = all(alive for _, alive in control.processes(args.state_dir))
    print("records (read back through the RFC 2136 provider):")
    code = _reexec(args, ["status"]) if healthy else EXIT_FAILED
    return EXIT_OK if healthy and code == 0 else EXIT_FAILED


def run_down(args: argparse.Namespace) -> int:
    control.preflight()
    stopped = control.down(args.state_dir, args.namespace, purge=args.purge)
    print(f"lab down: stopped {', '.join(stopped) if stopped else 'nothing (no process was running)'}; namespace {args.namespace} removed")
    return EXIT_OK
