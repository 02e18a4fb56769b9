"""``mailstack lab check`` inside the namespace: the whole check suite, e2e included.

It runs the check suite as ``mailstack check`` does (``mailstack.checks.run``) on the
lab's plan — the translated stack's (``mailstack.lab.translate``), so the expectations
name the lab's addresses the records carry — with the system resolver (inside the
namespace, the lab's BIND), the lab's gateway DKIM key pair and the lab CA for HTTPS
(MTA-STS), after pointing the ``e2e`` group at the lab's roles through its
environment variables (``mailstack.checks.probes.e2e.E2eSettings``): the independent
receiver's mailbox and authserv-id, the simulated third parties' submission
endpoints, the outside sender, Odoo's credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

from mailstack.checks import run as check_run
from mailstack.checks.dns.dnssec import parse_anchors
from mailstack.checks.engine.context import DnssecOptions, HttpsOptions, SmtpOptions, TlsOptions
from mailstack.checks.engine.finding import exit_code
from mailstack.config import stackfile
from mailstack.lab import control, files, roles
from mailstack.lab.receiver import AUTHSERV_ID
from mailstack.lab.state import private_dir
from mailstack.lab.topology import RECIPIENT6_DOMAIN, RECIPIENT_DOMAIN
from mailstack.lab.topology import build as build_topology

PROBE_RECIPIENT = "probe"
OUTSIDE_SENDER = "sender"


def third_parties(lab: roles.Lab) -> dict[str, list[dict[str, str | None]]]:
    """The simulated services' submission endpoints, by e2e sender id."""
    found: dict[str, list[dict[str, str | None]]] = {}
    for relay in roles.simulation(lab).relays:
        host = f"[{relay.listen}]" if ":" in relay.listen else relay.listen
        found.setdefault(relay.id, []).append({"submit": f"{host}:{relay.port}", "source": None, "note": relay.note})
    return found


def environment(lab: roles.Lab, wait: float) -> dict[str, str]:
    """The ``MAILSTACK_E2E_*`` and Odoo credential variables for the lab's roles."""
    state, topology = lab.state, lab.topology
    parties = files.write(private_dir(state.role_dir("services")) / "third-parties.json", json.dumps(third_parties(lab), indent=1), 0o600)
    receiver, receiver6 = topology.receiver, topology.receiver6
    assert receiver.ipv4 and receiver6.ipv6 and topology.odoo.ipv4
    return {
        "MAILSTACK_E2E": "1",
        "MAILSTACK_E2E_SUBMIT_SOURCE": topology.odoo.ipv4,
        "MAILSTACK_E2E_RECIPIENT": f"{PROBE_RECIPIENT}@{RECIPIENT_DOMAIN}",
        "MAILSTACK_E2E_RECIPIENT_IPV6": f"{PROBE_RECIPIENT}@{RECIPIENT6_DOMAIN}",
        "MAILSTACK_E2E_MAILDIR": str(state.role_dir("receiver") / "mail"),
        "MAILSTACK_E2E_AUTHSERV_ID": AUTHSERV_ID,
        "MAILSTACK_E2E_THIRD_PARTIES": str(parties),
        "MAILSTACK_E2E_SENDER": f"{OUTSIDE_SENDER}@{RECIPIENT_DOMAIN}",
        "MAILSTACK_E2E_SENDER_SOURCE": receiver.ipv4,
        "MAILSTACK_E2E_SENDER_SOURCE_IPV6": receiver6.ipv6,
        "MAILSTACK_E2E_ALIAS": roles.PROBE_ALIAS,
        "MAILSTACK_E2E_ODOO_STORE": str(state.role_dir("odoo") / "odoo-standin.sqlite3"),
        "MAILSTACK_E2E_WAIT": str(wait),
        "MAILSTACK_ODOO_LOGIN": roles.odoo_user(lab.stack)[0],
        "MAILSTACK_ODOO_PASSWORD_FILE": str(state.secrets / "odoo.password"),
        "MAILSTACK_E2E_MINUTE": str(roles.ODOO_MINUTE),
        **smtp_auth(lab),
        **imap(lab),
    }


def imap(lab: roles.Lab) -> dict[str, str]:
    """The ``imap`` checks log in to the lab's Dovecot as Odoo does, and verify its
    certificate against the lab's CA."""
    if roles.imap_mailbox(lab.stack) is None:
        return {}
    return {"MAILSTACK_IMAP_PASSWORD_FILE": str(lab.state.secrets / "imap.password"), "MAILSTACK_IMAP_CAFILE": str(lab.state.ca_file)}


def smtp_auth(lab: roles.Lab) -> dict[str, str]:
    """With ``gateway.smtpAuth``: the probes log in as Odoo, and submit from an address
    outside ``odooAddresses`` (the outside sender's), so nothing but the login lets them
    through — the gateway's SASL set-up is proven, not bypassed by ``mynetworks``."""
    settings = lab.stack.gateway
    if settings is None or settings.smtp_auth is None:
        return {}
    lab.state.smtp_auth_password()  # made on first use, before the gateways start
    assert lab.topology.receiver.ipv4
    return {
        "MAILSTACK_E2E_SUBMIT_USER": settings.smtp_auth.user,
        "MAILSTACK_E2E_SUBMIT_PASSWORD_FILE": str(lab.state.secrets / "smtp-auth.password"),
        "MAILSTACK_E2E_SUBMIT_SOURCE": lab.topology.receiver.ipv4,
    }


def run(args: argparse.Namespace, stack_file: Path) -> int:
    """Run the check suite against the lab with ``lab check``'s options; its exit code."""
    stack = stackfile.load(stack_file)
    lab = control.make_lab(args.state_dir, stack, build_topology(stack, args.namespace))
    os.environ.update(environment(lab, args.probe_wait))
    state = lab.state
    private_key = state.dkim_private_key(stack.dkim.selector, stack.dkim.bits)
    defaults = check_run.Options()
    settings = check_run.Options(
        timeout=args.timeout if args.timeout is not None else defaults.timeout,
        only=tuple(args.only),
        disable=tuple(args.disable),
        workers=args.workers if args.workers is not None else defaults.workers,
        deadline=args.deadline,
        smtp=SmtpOptions(helo=socket.getfqdn()),
        https=HttpsOptions(cafile=str(state.ca_file)),
        tls=TlsOptions(cafile=str(state.ca_file)),
        dnssec=DnssecOptions(parse_anchors(state.trust_anchor_file.read_text(encoding="ascii"), str(state.trust_anchor_file)) if state.dnssec else None),
    )
    target = check_run.for_plan(lab.plan, settings, stack_file=stack_file, disabled=stack.checks.disable, gateway_private_key=private_key)
    findings = check_run.execute(target, settings)
    check_run.write_report(target, findings, args.format, args.output, verbose=args.verbose)
    return exit_code(findings, strict=args.strict)

