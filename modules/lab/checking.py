"""``mailstack lab check`` inside the namespace: the whole check suite, e2e included.

It runs ``mailstack check`` itself (``checks.cli.run``) on the lab's stack with the
system resolver — inside the namespace that is the lab's BIND — and the lab's DKIM key
pair, after pointing the ``e2e`` group at the lab's roles through its environment
variables (``checks.e2e_probe.E2eSettings``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from modules import stackfile
from modules.lab.state import LabState
from modules.lab.topology import from_stack

PROBE_RECIPIENT = "probe"
OUTSIDE_SENDER = "sender"


def environment(state_dir: Path, stack_file: Path, namespace: str, wait: float) -> dict[str, str]:
    """The ``MAILSTACK_E2E_*`` and Odoo credential variables for the lab's roles."""
    stack = stackfile.load(stack_file)
    topology = from_stack(stack, namespace)
    state = LabState.load(state_dir)
    return {
        "MAILSTACK_E2E": "1",
        "MAILSTACK_E2E_SUBMIT": f"{topology.gateway_address}:25",
        "MAILSTACK_E2E_SUBMIT_SOURCE": topology.odoo_address,
        "MAILSTACK_E2E_RECIPIENT": f"{PROBE_RECIPIENT}@{topology.recipient_domain}",
        "MAILSTACK_E2E_RECIPIENT_SPOOL": str(state.root / "recipient" / "spool"),
        "MAILSTACK_E2E_SENDER": f"{OUTSIDE_SENDER}@{topology.recipient_domain}",
        "MAILSTACK_E2E_SENDER_SOURCE": topology.recipient_address,
        "MAILSTACK_E2E_ODOO_STORE": str(state.root / "odoo" / "odoo-standin.sqlite3"),
        "MAILSTACK_E2E_WAIT": str(wait),
        "MAILSTACK_ODOO_LOGIN": "admin",
        "MAILSTACK_ODOO_PASSWORD_FILE": str(state.root / "odoo.password"),
    }


def key_files(state_dir: Path, stack_file: Path) -> tuple[Path, Path]:
    """The lab's DKIM private key and a public-key file for ``--dkim-public-key``."""
    stack = stackfile.load(stack_file)
    state = LabState.load(state_dir)
    private_pem = state.dkim_private_key(stack.dkim.selector, stack.dkim.bits)
    public_path = state.root / "dkim" / f"{stack.dkim.selector}.public"
    public_path.write_text(LabState.public_key_pem(private_pem), encoding="ascii")
    return state.root / "dkim" / f"{stack.dkim.selector}.private", public_path


def run(args: argparse.Namespace, stack_file: Path) -> int:
    """Run ``mailstack check`` against the lab with its output options; its exit code."""
    from checks import cli as check_cli

    os.environ.update(environment(args.state_dir, stack_file, args.namespace, args.probe_wait))
    private_key, public_key = key_files(args.state_dir, stack_file)
    # Parse with `mailstack check`'s own parser, so every option keeps its default.
    parser = argparse.ArgumentParser(prog="mailstack")
    check_cli.register(parser.add_subparsers(dest="command"))
    argv = [
        "check", "--stack-file", str(stack_file), "--format", args.format, "--deadline", str(args.deadline),
        "--dkim-public-key", str(public_key), "--dkim-private-key", str(private_key),
        *(f"--only={group}" for group in args.only), *(f"--disable={i}" for i in args.disable),
        *(["--strict"] if args.strict else []), *(["--verbose"] if args.verbose else []),
        *(["--output", str(args.output)] if args.output else []),
        *([f"--timeout={args.timeout}"] if args.timeout is not None else []),
        *([f"--workers={args.workers}"] if args.workers is not None else []),
    ]
    check_args = parser.parse_args(argv)
    result: int = check_args.handler(check_args)
    return result
