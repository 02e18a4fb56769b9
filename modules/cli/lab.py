"""``mailstack lab up|check|status|down``: the whole on-premise mail path on loopback.

The host side checks root and packages and creates the network namespace; then the
command re-executes itself inside the namespace (``ip netns exec``), where it starts
the servers, publishes the records through the RFC 2136 provider, and runs the check
suite (``lab check`` takes ``mailstack check``'s output options and exit codes).
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
from mailstack.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mailstack.config import stackfile
from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain
from mailstack.lab import control, seed
from mailstack.lab.binaries import binary
from mailstack.lab.state import LabState
from mailstack.lab.topology import DEFAULT_NAMESPACE, DEFAULT_STATE_DIR, Topology, from_stack
from mailstack.plan.changes import Action
from mailstack.rfc2136.sync import ConflictError

DEFAULT_STACK = "lab"
FORMATS = ("text", "json", "junit", "sarif")
#: Exit code of ``lab up`` inside the namespace when the plan conflicts with the seeded
#: zones: the host side then keeps BIND up (and says so) instead of tearing it down.
INSIDE_CONFLICT = 3
#: The order ``lab up`` reports its record changes in.
REPORTED = (Action.CREATE, Action.UPDATE, Action.DELETE, Action.ADOPT, Action.SAME, Action.UNMANAGED)

HELP = """\
Bring up the whole on-premise mail path on this machine, in a private network
namespace on loopback only: BIND (the stack's zones, published by RFC 2136 with TSIG),
the gateway (Postfix + OpenDKIM rendered from the stack, the mailgate), an Odoo
XML-RPC stand-in, and a recipient mail server that verifies SPF, DKIM and DMARC.
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
    topology = from_stack(stack, args.namespace)
    seeds = _seeds(args, planning.build(stack))
    if control.inside(args.namespace):
        return _up_inside(args, stack, topology, seeds)
    started = time.monotonic()
    prepared = control.prepare(args.state_dir, topology, stack_file, _digest(seeds))
    code = _reexec(args, ["up", "--stack-file", str(stack_file), *(f"--seed-zone={s.path}" for s in seeds)])
    if code == INSIDE_CONFLICT:
        print(f"the lab's BIND is left up in namespace {args.namespace} with the zones exactly as seeded, nothing of "
              "the plan written: inspect them (ip netns exec … dig), then `mailstack lab down`", file=sys.stderr)
        return EXIT_USAGE
    if code != EXIT_OK:
        control.down(args.state_dir, args.namespace)
        print(f"error: the lab did not come up (exit {code} inside the namespace); everything it started was stopped", file=sys.stderr)
        return EXIT_USAGE
    print(("lab was already up" if prepared.running else "lab is up") + f" in namespace {args.namespace} ({time.monotonic() - started:.1f}s)")
    _print_roles(args.state_dir, topology.addresses)
    return EXIT_OK


def _up_inside(args: argparse.Namespace, stack: MailDomain, topology: Topology, seeds: tuple[seed.Seed, ...]) -> int:
    """Inside the namespace: start or repair the roles and publish the records."""
    state = LabState.load(args.state_dir)
    planned = control.lab_plan(args.state_dir, stack)
    try:
        if state.processes:
            restarted = control.repair(args.state_dir, planned, topology)
            if restarted:
                print(f"restarted: {', '.join(restarted)}")
            changes = control.provision_records(args.state_dir, planned, topology)
        else:
            changes = control.start(args.state_dir, planned, topology, seeds)
    except ConflictError as err:
        print(f"error: {err}", file=sys.stderr)
        return INSIDE_CONFLICT
    counts = changes.counts()
    print(f"records on {topology.bind_address}: " + ", ".join(f"{counts[a.value]} {a.value}" for a in REPORTED if counts[a.value]))
    return EXIT_OK


def _print_roles(state_dir: Path, addresses: dict[str, str]) -> None:
    where = {"postfix": "gateway", "opendkim": "gateway"}
    for process, alive in control.processes(state_dir):
        address = addresses.get(where.get(process.role, process.role), "")
        print(f"  {process.role:<10} pid {process.pid:<8} {address:<15} {'running' if alive else 'NOT RUNNING'}")


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
        planned = control.lab_plan(args.state_dir, stack)
        for record, served in control.live_records(args.state_dir, planned, from_stack(stack, args.namespace)):
            print(f"  {'served' if served else 'ABSENT':<7} {record.name} {record.type} {record.value}"[:200])
        return EXIT_OK
    control.preflight()
    state = LabState.load(args.state_dir)
    if not state.processes:
        print(f"no lab is up in {args.state_dir}")
        return EXIT_FAILED
    stack = stackfile.load(Path(state.stack_file))
    topology = from_stack(stack, args.namespace)
    print(f"lab in namespace {args.namespace}, stack {state.stack_file}, state {args.state_dir}")
    _print_roles(args.state_dir, topology.addresses)
    healthy = all(alive for _, alive in control.processes(args.state_dir))
    print("records (read back through the RFC 2136 provider):")
    code = _reexec(args, ["status"]) if healthy else EXIT_FAILED
    return EXIT_OK if healthy and code == 0 else EXIT_FAILED


def run_down(args: argparse.Namespace) -> int:
    control.preflight()
    stopped = control.down(args.state_dir, args.namespace, purge=args.purge)
    print(f"lab down: stopped {', '.join(stopped) if stopped else 'nothing (no process was running)'}; namespace {args.namespace} removed")
    return EXIT_OK
