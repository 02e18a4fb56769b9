"""``e2e.inbound.imap``: inbound by IMAP fetch, proven with a real message.

For a stack in ``inbound.mode: imap``, one probe per declared alias goes from the
outside sender to the domain's MX as DNS says (the mailbox provider's), lands in the
mailbox, and must appear in Odoo (``mail.message`` by Message-ID, on the model of the
alias) within the fetch interval ``inbound.imap.interval`` — Odoo's fetchmail cron —
plus the time the delivery took. A probe still missing after ``MAILSTACK_E2E_WAIT`` is
``error``; found but later than the interval allows is ``fail``.

Like the other e2e checks it runs only with ``MAILSTACK_E2E=1``; ``MAILSTACK_E2E_MINUTE``
gives the length of one of Odoo's minutes in seconds (60; the lab's stand-in may run
its cron on a shorter clock).
"""

from __future__ import annotations

import os
import time
import xmlrpc.client

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped
from mailstack.checks.engine.registry import check
from mailstack.checks.groups.e2e import DISABLED
from mailstack.checks.groups.e2e import settings as _settings
from mailstack.checks.groups.e2e_inbound import routes
from mailstack.checks.probes import e2e as e2e_probe
from mailstack.checks.probes.e2e import OdooClient, ProbeError, ProbeRejected
from mailstack.core.model import InboundMode

def _mx_address(ctx: CheckContext, domain: str) -> str:
    """The first address of the most preferred MX of ``domain`` (the order
    ``e2e_inbound.routes`` gives; raises DnsError, ProbeError when there is none)."""
    found = routes(ctx, domain)
    if not found:
        raise ProbeError(f"{domain}: no MX address to send to")
    return found[0][1]


#: Seconds between delivery and the fetch beyond the interval (the cron's own tick).
GRACE = 5.0


@check("e2e.inbound.imap", group="e2e", ref="Odoo 17 fetchmail.server (Mail: Fetchmail Service)")
def inbound_imap(ctx: CheckContext) -> list[Finding]:
    """A message to an alias reaches Odoo through the mailbox within the fetch interval."""
    settings, stack = _settings(ctx), ctx.stack
    if not settings.enabled:
        return [skipped("e2e.inbound.imap", DISABLED)]
    if stack is None or stack.inbound.mode is not InboundMode.IMAP or stack.inbound.imap is None:
        return [skipped("e2e.inbound.imap", "needs inbound.mode imap with inbound.imap declared")]
    if not stack.inbound.aliases:
        return [skipped("e2e.inbound.imap", "the stack declares no inbound aliases")]
    if not (settings.odoo_login and settings.odoo_password and stack.odoo.rpc_url and stack.odoo.database):
        return [errored("e2e.inbound.imap", "needs Odoo's URL and database (stack) and MAILSTACK_ODOO_LOGIN/MAILSTACK_ODOO_PASSWORD")]
    minute = float(os.environ.get("MAILSTACK_E2E_MINUTE") or 60)
    allowed = stack.inbound.imap.interval * minute + GRACE
    client = OdooClient(stack.odoo.rpc_url, stack.odoo.database, settings.odoo_login, settings.odoo_password)
    sender_domain = settings.sender.rsplit("@", 1)[1]
    findings = []
    for domain in stack.domains:
        target = f"{stack.inbound.aliases[0]}@{stack.inbound_domain(domain)}"
        message_id = e2e_probe.new_message_id("in-imap", sender_domain)
        sender = e2e_probe.probe_sender(settings.sender, message_id)
        raw, _ = e2e_probe.build(message_id, {"From": sender, "To": target, "Subject": f"mailstack e2e inbound probe (imap {target})"}, "inbound-imap")
        try:
            mx = _mx_address(ctx, stack.inbound_domain(domain))
            sent = e2e_probe.submit(mx, 25, sender, [target], raw, source=settings.sender_source, helo=f"mx.{sender_domain}")
        except ProbeRejected as err:
            findings.append(failed("e2e.inbound.imap", f"{target}: the mailbox provider's MX refused the probe: {err}"))
            continue
        except ProbeError as err:
            findings.append(errored("e2e.inbound.imap", f"{target}: probe not sent: {err}"))
            continue
        records, when, last_error = e2e_probe.wait_for_odoo(client, message_id, sent + max(settings.wait, allowed))
        if not records or when is None:
            why = f" (last error: {last_error})" if last_error else ""
            findings.append(errored("e2e.inbound.imap", f"{target}: {message_id} not in Odoo within {max(settings.wait, allowed):g}s{why}",
                                    detail="is the incoming server confirmed and the fetchmail cron active? (odoo.incoming-server)"))
            continue
        elapsed = when - sent
        try:
            model = client.alias_model(target)
        except (OSError, PermissionError, xmlrpc.client.Error):
            model = None
        interval = f"the {stack.inbound.imap.interval}-minute fetch interval"
        if model is not None and records[0].get("model") != model:
            findings.append(failed("e2e.inbound.imap", f"{target}: fetched, but posted on {records[0].get('model')}, not on {model}"))
        elif elapsed > allowed:
            findings.append(failed("e2e.inbound.imap", f"{target}: in Odoo after {elapsed:.1f}s, later than {interval} allows ({allowed:g}s)"))
        else:
            findings.append(passed("e2e.inbound.imap", f"{target}: delivered to the mailbox and fetched by Odoo after {elapsed:.1f}s, within {interval}",
                                   detail=f"{message_id} → mail.message {records[0].get('id')} ({time.strftime('%H:%M:%S', time.localtime(when))})"))
    return findings
