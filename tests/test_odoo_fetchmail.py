"""Inbound by IMAP fetch against a real Dovecot (Debian dovecot-imapd): the stand-in
runs Odoo 17's fetchmail (UNSEEN search, fetch, message_process, the \\Seen flag as
stock 17.0 sets it — and as the fix sets it), its cron on the declared interval; the
provider declares the incoming server; the ``imap`` checks log in and report.

Dovecot and the stand-in run on 127.0.113.80/81 with free ports; one Odoo "minute"
lasts one second here (``--minute 1``), so a 2-minute interval is 2 s."""

from __future__ import annotations

import imaplib
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.groups import imap as imap_checks
from mailstack.checks.probes import imap as imap_probe
from mailstack.core.model import ImapMailbox
from mailstack.lab.dovecot import Dovecot
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import make_workdir, wait_for
from mailstack.odoo.client import OdooClient
from mailstack.odoo.apply import incoming_server_props
from mailstack.providers.odoo import OdooSettingProvider
from mailstack.odoo.desired import IncomingServer
from tests.ports import free_port
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

IMAP_ADDRESS, ODOO_ADDRESS = "127.0.113.80", "127.0.113.81"
USER, IMAP_PASSWORD, ODOO_PASSWORD = "odoo@example.net", "imap-Pw-9", "odoo-Pw-9"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    require_root()
    require_binary("dovecot")
    workdir = make_workdir("ms13-dovecot-")
    server = Dovecot(workdir, IMAP_ADDRESS, "imap.example.net", {USER: IMAP_PASSWORD, "other@example.net": "x"},
                     imap_port=free_port(IMAP_ADDRESS), imaps_port=free_port(IMAP_ADDRESS))
    try:
        with server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def standin(tmp_path: Path, seen: str = "always") -> OdooStandIn:
    return OdooStandIn(tmp_path / f"odoo-{seen}", ODOO_ADDRESS, free_port(ODOO_ADDRESS), password=ODOO_PASSWORD,
                       aliases=["sales@example.net"], minute=1.0, fetchmail_seen=seen)


def mailbox(dovecot: Dovecot) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=str(dovecot.cert_path))
    context.check_hostname = False  # reached by address here; the checks verify the name
    client = imaplib.IMAP4_SSL(IMAP_ADDRESS, dovecot.imaps_port, ssl_context=context)
    client.login(USER, IMAP_PASSWORD)
    client.select()
    return client


def deliver(dovecot: Dovecot, message_id: str, to: str) -> None:
    client = mailbox(dovecot)
    raw = f"From: Customer <customer@outside.test>\r\nTo: {to}\r\nSubject: fetched\r\nMessage-Id: {message_id}\r\n\r\nbody\r\n"
    client.append("INBOX", None, None, raw.encode())
    client.logout()


def flags(dovecot: Dovecot) -> dict[str, bool]:
    """Message-Id → seen, for every message in the mailbox."""
    client = mailbox(dovecot)
    _, numbers = client.search(None, "ALL")
    result = {}
    for num in numbers[0].split():
        _, data = client.fetch(num.decode(), "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        head, body = data[0]  # type: ignore[misc]
        result[body.decode().split(":", 1)[1].strip()] = b"\\Seen" in head
    client.logout()
    return result


def clear(dovecot: Dovecot) -> None:
    client = mailbox(dovecot)
    _, numbers = client.search(None, "ALL")
    if numbers[0]:
        client.store("1:*", "+FLAGS", "\\Deleted")
        client.expunge()
    client.logout()


def server_props(odoo: OdooStandIn, dovecot: Dovecot, interval: int = 2, **extra: Any) -> dict[str, Any]:
    spec = IncomingServer("incoming_server_example_net", f"mailstack: {USER}@imap", IMAP_ADDRESS, dovecot.imaps_port, True, USER, None, interval)
    return {"url": odoo.url, "database": "odoo", "login": "admin", "password": ODOO_PASSWORD, "adopt": False,
            **incoming_server_props(spec), "imapPassword": IMAP_PASSWORD, **extra}


def stored_ids(odoo: OdooStandIn) -> set[str]:
    return {m["message_id"] for m in odoo.messages()}


@pytest.mark.parametrize("seen", ["always", "after-success"])
def test_fetchmail_processes_unseen_mail_and_sets_seen_like_odoo_17(dovecot: Dovecot, tmp_path: Path, seen: str) -> None:
    clear(dovecot)
    deliver(dovecot, f"<good-{seen}@o>", "sales@example.net")
    deliver(dovecot, f"<noroute-{seen}@o>", "nobody@example.net")
    with standin(tmp_path, seen) as odoo:
        rpc = OdooClient(odoo.url, "odoo", "admin", ODOO_PASSWORD)
        created = OdooSettingProvider().create(server_props(odoo, dovecot))
        server_id = created.outs["recordId"]
        assert rpc.search_read("fetchmail.server", [["id", "=", server_id]], ["state"])[0]["state"] == "done"
        rpc.call("fetchmail.server", "fetch_mail", [server_id])  # "Fetch Now"
        assert stored_ids(odoo) == {f"<good-{seen}@o>"}
        state = flags(dovecot)
        assert state[f"<good-{seen}@o>"] is True
        # Stock 17.0 stores +FLAGS \\Seen even when message_process failed: never retried.
        assert state[f"<noroute-{seen}@o>"] is (seen == "always")
        model = rpc.call("ir.model", "search", [["model", "=", "crm.lead"]])[0]
        rpc.call("mail.alias", "create", {"alias_name": "nobody", "alias_model_id": model})
        rpc.call("fetchmail.server", "fetch_mail", [server_id])
        expected = {f"<good-{seen}@o>"} | ({f"<noroute-{seen}@o>"} if seen == "after-success" else set())
        assert stored_ids(odoo) == expected
        OdooSettingProvider().delete(created.id, created.outs)


def test_the_cron_fetches_on_the_declared_interval_and_the_provider_restores_it(dovecot: Dovecot, tmp_path: Path) -> None:
    clear(dovecot)
    with standin(tmp_path) as odoo:
        rpc = OdooClient(odoo.url, "odoo", "admin", ODOO_PASSWORD)
        cron = rpc.search_read("ir.cron", [["name", "=", "Mail: Fetchmail Service"]], ["interval_number", "active"])[0]
        assert cron["interval_number"] == 5 and cron["active"] is False  # Odoo 17's data: inactive until a server is confirmed
        provider = OdooSettingProvider()
        created = provider.create(server_props(odoo, dovecot, interval=2))
        cron = rpc.search_read("ir.cron", [["id", "=", cron["id"]]], ["interval_number", "interval_type", "active"])[0]
        assert (cron["interval_number"], cron["interval_type"], cron["active"]) == (2, "minutes", True)
        time.sleep(1.5)  # let the first run (right after activation) pass
        deliver(dovecot, "<cron@o>", "sales@example.net")
        delivered = time.monotonic()
        wait_for(lambda: "<cron@o>" in stored_ids(odoo), 10, interval=0.1, what="the cron to fetch")
        elapsed = time.monotonic() - delivered
        print(f"fetched by the cron {elapsed:.1f} Odoo-minutes after delivery (interval 2)")
        assert elapsed <= 2 + 1.0, "within the interval (plus the cron's one-tick latency)"
        updated = provider.update(created.id, created.outs, {**created.outs, "interval": 3})
        assert rpc.search_read("ir.cron", [["id", "=", cron["id"]]], ["interval_number"])[0]["interval_number"] == 3
        provider.delete(created.id, updated.outs)
        cron = rpc.search_read("ir.cron", [["id", "=", cron["id"]]], ["interval_number", "active"])[0]
        assert (cron["interval_number"], cron["active"]) == (5, False) and rpc.search_read("fetchmail.server", [], ["id"]) == []


def test_a_wrong_imap_password_fails_create_and_leaves_nothing(dovecot: Dovecot, tmp_path: Path) -> None:
    with standin(tmp_path) as odoo:
        with pytest.raises(Exception, match="Server replied with following exception") as caught:
            OdooSettingProvider().create(server_props(odoo, dovecot, imapPassword="wrong"))
        assert IMAP_PASSWORD not in str(caught.value) and ODOO_PASSWORD not in str(caught.value)
        rpc = OdooClient(odoo.url, "odoo", "admin", ODOO_PASSWORD)
        assert rpc.search_read("fetchmail.server", [], ["id"]) == [] and rpc.search_read("ir.model.data", [["module", "=", "mailstack"]], ["id"]) == []
        cron = rpc.search_read("ir.cron", [["name", "=", "Mail: Fetchmail Service"]], ["interval_number", "active"])[0]
        assert (cron["interval_number"], cron["active"]) == (5, False)  # as before the attempt


class _Resolver:
    """The one name the imap checks look up."""

    def addresses(self, name: str) -> tuple[str, ...]:
        return (IMAP_ADDRESS,) if name == "imap.example.net" else ()


def run_imap_checks(monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot, mailbox_: ImapMailbox, password: str | None) -> dict[str, Any]:
    from mailstack import plan as planning
    from mailstack.config.stack import from_config

    stack = from_config({"domain": "example.net", "odoo": {"hosting": "onpremise", "url": "http://127.0.113.81:1", "database": "odoo"},
                         "outbound": [{"type": "microsoft", "tenant": "example"}], "inbound": {"mode": "imap", "mx": "microsoft",
                         "imap": {"host": mailbox_.host, "user": mailbox_.user, "port": mailbox_.port, "security": mailbox_.security}}})
    monkeypatch.setenv("MAILSTACK_IMAP_CAFILE", str(dovecot.cert_path))
    if password is None:
        monkeypatch.delenv("MAILSTACK_IMAP_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("MAILSTACK_IMAP_PASSWORD", password)
    ctx = CheckContext("example.net", _Resolver(), plan=planning.build(stack))  # type: ignore[arg-type]
    return {f.id: f for check in (imap_checks.tls, imap_checks.login, imap_checks.mailbox) for f in check(ctx)}


def test_imap_checks_report_tls_login_and_mailbox(monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot) -> None:
    clear(dovecot)
    deliver(dovecot, "<unseen@o>", "sales@example.net")
    declared = ImapMailbox("imap.example.net", USER, dovecot.imaps_port, "ssl")
    found = run_imap_checks(monkeypatch, dovecot, declared, IMAP_PASSWORD)
    assert found["imap.tls"].status == "pass" and "TLSv1." in found["imap.tls"].summary
    assert found["imap.login"].status == "pass"
    assert found["imap.mailbox"].status == "pass" and "1 message(s), 1 unseen" in found["imap.mailbox"].summary
    assert flags(dovecot)["<unseen@o>"] is False, "the check examines read-only: Odoo still fetches it"
    wrong = run_imap_checks(monkeypatch, dovecot, declared, "wrong")
    assert wrong["imap.login"].status == "fail" and "wrong" not in wrong["imap.login"].summary
    starttls = run_imap_checks(monkeypatch, dovecot, ImapMailbox("imap.example.net", USER, dovecot.imap_port, "starttls"), IMAP_PASSWORD)
    assert starttls["imap.tls"].status == "warn" and "no STARTTLS" in starttls["imap.tls"].summary
    assert starttls["imap.login"].status == "pass"
    monkeypatch.delenv("MAILSTACK_IMAP_CAFILE")
    untrusted = imap_probe.probe(declared, IMAP_ADDRESS, IMAP_PASSWORD)
    assert untrusted.stage == "tls" and "certificate not valid" in untrusted.tls_error


def test_the_imap_password_from_a_file_and_an_unreadable_file_named(monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot, tmp_path: Path) -> None:
    declared = ImapMailbox("imap.example.net", USER, dovecot.imaps_port, "ssl")
    secret = tmp_path / "imap-password"
    secret.write_text(IMAP_PASSWORD + "\n", encoding="utf-8")
    monkeypatch.setenv("MAILSTACK_IMAP_PASSWORD_FILE", str(secret))
    assert run_imap_checks(monkeypatch, dovecot, declared, None)["imap.login"].status == "pass"
    monkeypatch.setenv("MAILSTACK_IMAP_PASSWORD_FILE", str(tmp_path / "missing"))
    found = run_imap_checks(monkeypatch, dovecot, declared, None)
    assert {f.status for f in found.values()} == {"error"}
    assert "MAILSTACK_IMAP_PASSWORD_FILE" in found["imap.login"].summary and "No such file" in found["imap.login"].summary
    assert "crashed" not in found["imap.login"].summary
