"""Inbound by IMAP fetch, end to end: an imap-mode stack's mail goes to the mailbox
provider's MX as DNS says (Debian's Postfix, delivering into Dovecot's Maildir), Odoo's
incoming server — declared by the provider from the stack — fetches it on the declared
interval, and the ``e2e.inbound.imap`` check finds the probe in Odoo within it.

In namespace ms13-imap-* on 127.0.113.0/24; the stand-in's minute lasts 2 s
(``--minute 2``, ``MAILSTACK_E2E_MINUTE=2``), so the 1-minute interval is 2 s."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from mailstack.lab.dovecot import MAIL_USER, Dovecot
from mailstack.lab.maildir_mx import MailboxHost, MaildirMx
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import make_workdir
from mailstack.odoo.desired import desired
from mailstack.providers.odoo import incoming_server_props
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

BIND, MAILBOX_MX, IMAP, ODOO, OUTSIDE = "127.0.113.102", "127.0.113.110", "127.0.113.111", "127.0.113.120", "127.0.113.130"
USER, IMAP_PASSWORD, ODOO_PASSWORD = "odoo@contoso.test", "imap-pw-7", "odoo-pw-7"
IN_NAMESPACE = """
import json, sys
request = json.load(sys.stdin)
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.dns.resolver import Resolver
from mailstack.checks.groups import e2e_imap
from mailstack import plan
from mailstack.config.stack import from_config
stack = from_config(request["stack"])
ctx = CheckContext(stack.domain, Resolver.from_strings(["%s"]), plan=plan.build(stack))
print(json.dumps([f.as_json() for f in e2e_imap.inbound_imap(ctx)]))
"""


@dataclass
class ImapLab:
    netns: str
    stack_values: dict[str, Any]
    stack: MailDomain
    standin: OdooStandIn
    dovecot: Dovecot
    mx: MaildirMx


@pytest.fixture(scope="module")
def lab() -> Iterator[ImapLab]:
    require_root()
    for name in ("postfix", "named", "dovecot"):
        require_binary(name)
    name = f"ms13-imap-{os.getpid()}"
    workdir = make_workdir("ms13-imap-")
    started: list[Any] = []
    values: dict[str, Any] = {
        "domain": "contoso.test",
        "odoo": {"hosting": "onpremise", "url": f"http://{ODOO}:8069", "database": "contoso", "manage": ["incomingServer"]},
        "outbound": [{"type": "microsoft", "tenant": "contoso"}],
        "inbound": {"mode": "imap", "mx": [{"host": "mx.mailbox.test"}], "aliases": ["sales"],
                    "imap": {"host": "imap.mailbox.test", "user": USER, "interval": 1}},
        "dns": {"zone": "contoso.test"},
    }
    try:
        stack = from_config(values)
        plan = planning.build(stack)
        netns.create(name, nameserver=BIND)
        for address in (BIND, MAILBOX_MX, IMAP, ODOO, OUTSIDE):
            netns.add_address(address, name)
        bind = BindServer(workdir / "bind", BIND, 53, netns=name)
        bind.add_zone("contoso.test", [r for r in plan.records if r.type in ("MX", "TXT")])
        bind.add_zone("mailbox.test", [Record("mx.mailbox.test", "A", MAILBOX_MX, 300), Record("imap.mailbox.test", "A", IMAP, 300)])
        dovecot = Dovecot(workdir / "dovecot", IMAP, "imap.mailbox.test", {USER: IMAP_PASSWORD}, netns=name)
        mailbox_mx = MailboxHost(workdir / "mx", MAILBOX_MX, "mx.mailbox.test", "contoso.test", workdir / "dovecot" / "mail",
                                 f"{USER}/Maildir", MAIL_USER, netns=name)
        standin = OdooStandIn(workdir / "odoo", ODOO, 8069, database="contoso", password=ODOO_PASSWORD, netns=name,
                              aliases=["sales@contoso.test"], minute=2.0)
        for server in (bind, dovecot, mailbox_mx, standin):
            server.start()
            started.append(server)
        yield ImapLab(name, values, stack, standin, dovecot, mailbox_mx)
    finally:
        for server in reversed(started):
            server.stop()
        netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)


def in_namespace(lab: ImapLab, script: str, request: dict[str, Any], env: dict[str, str]) -> Any:
    import subprocess
    import sys

    result = subprocess.run(["ip", "netns", "exec", lab.netns, sys.executable, "-c", script], input=json.dumps(request),
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_declared_incoming_server_fetches_the_probe_within_the_interval(lab: ImapLab) -> None:
    # The provider declares Odoo's incoming server from the stack (run inside the namespace,
    # where Odoo and the IMAP server are), as `pulumi up` would.
    spec = desired(planning.build(lab.stack)).incoming_server
    assert spec is not None and (spec.server, spec.port, spec.is_ssl, spec.interval) == ("imap.mailbox.test", 993, True, 1)
    props = {"url": lab.standin.url, "database": "contoso", "login": "admin", "password": ODOO_PASSWORD, "adopt": False,
             **incoming_server_props(spec), "imapPassword": IMAP_PASSWORD}
    create = ("import json, sys; from mailstack.providers.odoo import OdooSettingProvider; "
              "r = OdooSettingProvider().create(json.load(sys.stdin)); print(json.dumps(r.outs))")
    outs = in_namespace(lab, create, props, {})
    assert outs["recordId"] >= 1 and outs["cronBefore"] == 5
    env = {"MAILSTACK_E2E": "1", "MAILSTACK_E2E_SENDER": "ann@outside.test", "MAILSTACK_E2E_SENDER_SOURCE": OUTSIDE,
           "MAILSTACK_E2E_MINUTE": "2", "MAILSTACK_E2E_WAIT": "30", "MAILSTACK_ODOO_LOGIN": "admin", "MAILSTACK_ODOO_PASSWORD": ODOO_PASSWORD}
    [finding] = in_namespace(lab, IN_NAMESPACE % BIND, {"stack": lab.stack_values}, env)
    assert finding["status"] == "pass", finding
    assert "delivered to the mailbox and fetched by Odoo after" in finding["summary"]
    stored = [m for m in lab.standin.messages() if "mailstack-e2e-in-imap" in m["message_id"]]
    assert len(stored) == 1 and stored[0]["model"] == "crm.lead"
    assert b"Delivered-To: sales@contoso.test" in stored[0]["raw"]  # written by the mailbox provider's delivery agent
