"""``mailstack lab check`` inside the namespace: the whole check suite, e2e included.

It runs the check suite as ``mailstack check`` does (``mailstack.checks.run``) on the
lab's stack with the system resolver — inside the namespace that is the lab's BIND — and the lab's DKIM key
pair, after pointing the ``e2e`` group at the lab's roles through its environment
variables (``mailstack.checks.probes.e2e.E2eSettings``).
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from mailstack.checks import run as check_run
from mailstack.checks.engine.context import SmtpOptions
from mailstack.checks.engine.finding import exit_code
from mailstack.config import stackfile
from mailstack.lab.state import LabState
from mailstack.lab.topology import from_stack

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
    """Run the check suite against the lab with ``lab check``'s options; its exit code."""
    os.environ.update(environment(args.state_dir, stack_file, args.namespace, args.probe_wait))
    private_key, public_key = key_files(args.state_dir, stack_file)
    defaults = check_run.Options()
    settings = check_run.Options(
        timeout=args.timeout if args.timeout is not None else defaults.timeout,
        only=tuple(args.only),
        disable=tuple(args.disable),
        workers=args.workers if args.workers is not None else defaults.workers,
        deadline=args.deadline,
        smtp=SmtpOptions(helo=socket.getfqdn()),
    )
    target = check_run.for_stack(
        stack_file,
        settings,
        gateway_public_key=public_key.read_text(encoding="ascii"),
        gateway_private_key=private_key.read_text(encoding="ascii"),
    )
    findings = check_run.execute(target, settings)
    check_run.write_report(target, findings, args.format, args.output, verbose=args.verbose)
    return exit_code(findings, strict=args.strict)
