"""The ``odoo`` checks of Odoo's side: each mismatch found and worded as what Odoo 17
will do. The state is read from the Odoo stand-in over XML-RPC (as against a real
Odoo), after setting it up the way a user might have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack import plan as planning
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding
from mailstack.checks.groups import odoo_settings
from mailstack.config.stack import from_config
from mailstack.lab.odoo import OdooStandIn
from mailstack.odoo.client import OdooClient
from tests.ports import free_port

ADDRESS = "127.0.113.90"
PASSWORD = "checks-pw"
CHECKS = (odoo_settings.connect, odoo_settings.alias_domains, odoo_settings.companies, odoo_settings.aliases,
          odoo_settings.outgoing_server, odoo_settings.from_filter, odoo_settings.incoming_server)


@pytest.fixture
def odoo(tmp_path: Path) -> Iterator[OdooStandIn]:
    with OdooStandIn(tmp_path / "odoo", ADDRESS, free_port(ADDRESS), password=PASSWORD, company="Example Co",
                     aliases=["sales@example.net"]) as standin:
        yield standin


def run(odoo: OdooStandIn, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, list[Finding]]:
    values: dict[str, Any] = {
        "domain": "example.net",
        "odoo": {"hosting": "onpremise", "url": odoo.url, "database": "odoo"},
        "outbound": ["gateway"], "inbound": {"mode": "gateway", "aliases": ["sales", "support"]},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}], "gateway": {"odooAddresses": ["192.0.2.20"]},
        **overrides,
    }
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD", PASSWORD)
    ctx = CheckContext("example.net", None, plan=planning.build(from_config(values)))  # type: ignore[arg-type]
    found: dict[str, list[Finding]] = {}
    for check in CHECKS:
        for finding in check(ctx):
            found.setdefault(finding.id, []).append(finding)
    return found


def statuses(found: dict[str, list[Finding]], check_id: str) -> list[str]:
    return [f.status.value for f in found[check_id]]


def test_a_database_set_up_as_declared_passes(odoo: OdooStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    rpc = OdooClient(odoo.url, "odoo", "admin", PASSWORD)
    model = rpc.call("ir.model", "search", [["model", "=", "crm.lead"]])[0]
    rpc.call("mail.alias", "create", {"alias_name": "support", "alias_model_id": model})
    found = run(odoo, monkeypatch)
    for check_id in ("odoo.connect", "odoo.alias-domains", "odoo.companies", "odoo.aliases", "odoo.outgoing-server"):
        assert statuses(found, check_id) == ["pass"], found[check_id]
    assert statuses(found, "odoo.from-filter") == ["pass", "pass", "pass"]
    outside = found["odoo.from-filter"][2].summary
    assert outside.startswith("an outside user: From rewritten to \"Bob\" <notifications@example.net>")
    assert statuses(found, "odoo.incoming-server") == ["skip"]


def test_mismatches_say_what_odoo_will_do(odoo: OdooStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    rpc = OdooClient(odoo.url, "odoo", "admin", PASSWORD)
    rpc.call("mail.alias.domain", "write", [1], {"bounce_alias": "rebound"})
    rpc.call("mail.alias.domain", "create", {"name": "old.example"})
    rpc.call("ir.mail_server", "create", {"name": "by hand", "smtp_host": "smtp.elsewhere.test", "from_filter": "elsewhere.test"})
    rpc.call("ir.config_parameter", "set_param", "mail.catchall.domain", "example.net")
    found = run(odoo, monkeypatch)
    domains = found["odoo.alias-domains"]
    assert domains[0].status.value == "fail" and "Return-Path is rebound@example.net" in domains[0].summary
    assert any("Odoo also has alias domain old.example" in f.summary for f in domains)
    assert any("Odoo 17 no longer reads them" in f.summary for f in domains)
    aliases = found["odoo.aliases"]
    assert [f.status.value for f in aliases] == ["warn"] and "support@example.net is declared but Odoo has no such alias" in aliases[0].summary
    servers = found["odoo.outgoing-server"]
    assert "odoo.conf's smtp_* options (rendered by mailstack) are ignored" in servers[0].summary
    assert servers[1].status.value == "fail" and "no outgoing server sends through mx1.example.net" in servers[1].summary
    # The record sends for elsewhere.test only: Odoo falls back to it and rewrites to notifications@.
    for finding in found["odoo.from-filter"]:
        assert finding.status.value == "fail" and "via server by hand (smtp.elsewhere.test): not the declared path (mx1.example.net)" in finding.summary


def test_checks_skip_without_credentials_and_fail_on_a_wrong_password(odoo: OdooStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSTACK_ODOO_PASSWORD", raising=False)
    ctx = CheckContext("example.net", None, plan=planning.build(from_config({  # type: ignore[arg-type]
        "domain": "example.net", "odoo": {"hosting": "onpremise", "url": odoo.url, "database": "odoo"},
        "outbound": ["gateway"], "inbound": {"mode": "gateway"}, "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}]})))
    [skip] = odoo_settings.connect(ctx)
    assert skip.status.value == "skip" and "MAILSTACK_ODOO_PASSWORD" in skip.summary
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD_FILE", "/nonexistent/odoo-password")
    [unreadable] = odoo_settings.connect(CheckContext("example.net", None, plan=ctx.plan))  # type: ignore[arg-type]
    assert unreadable.status.value == "error" and "MAILSTACK_ODOO_PASSWORD_FILE /nonexistent/odoo-password" in unreadable.summary
    monkeypatch.delenv("MAILSTACK_ODOO_PASSWORD_FILE")
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD", "wrong")
    ctx = CheckContext("example.net", None, plan=ctx.plan)  # type: ignore[arg-type]
    [refused] = odoo_settings.connect(ctx)
    assert refused.status.value == "fail" and "refused the login" in refused.summary and "wrong" not in refused.summary
