"""The Pulumi program with ``mailstack:odoo.manage`` under mocks: one resource per Odoo
record the stack declares, with Odoo 17's values, the passwords as secrets, and ordered
after the DNS records and the gateways Odoo will use."""

from __future__ import annotations

import base64
import json
from typing import Any

import dill
import pulumi
import pytest
from pulumi.runtime import rpc

from mailstack.providers.odoo import OdooSettingProvider
from tests.pulumi_harness import run_program

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ALIAS_DOMAIN = "pulumi-python:dynamic/mailstack:OdooAliasDomain"
MAIL_SERVER = "pulumi-python:dynamic/mailstack:OdooMailServer"
INCOMING = "pulumi-python:dynamic/mailstack:OdooIncomingServer"
BASE: dict[str, Any] = {
    "domain": "example.net",
    "aliasDomains": ["example.org"],
    "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod",
             "manage": ["aliasDomains", "outgoingServer"], "companies": {"Example EU": "example.org"}},
    "outbound": ["gateway"],
    "inbound": {"mode": "gateway", "aliases": ["sales"]},
    "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
    "gateway": {"smtpAuth": {"user": "odoo"}, "odooAddresses": ["192.0.2.20"]},
}
SECRETS = {"mailstack:odooPassword": "odoo-admin-pw", "mailstack:smtpAuthPassword": "smtp-pw", "mailstack:imapPassword": "imap-pw"}


def run(values: dict[str, Any], secrets: dict[str, str] = SECRETS) -> Any:
    config = {f"mailstack:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return run_program(config={**config, **secrets}, secret_keys=list(secrets))


def test_managed_settings_become_resources_after_dns_and_gateways() -> None:
    program = run(BASE)
    [dns] = program.of_type("mailstack:dns:CloudflareRecords")
    [gateway] = program.of_type("mailstack:gateway:Gateway")
    [component] = program.of_type("mailstack:odoo:Settings")
    domains = program.of_type(ALIAS_DOMAIN)
    [server] = program.of_type(MAIL_SERVER)
    assert program.of_type(INCOMING) == []
    assert {d.inputs["name"]: d.inputs["companies"] for d in domains} == {"example.net": [], "example.org": ["Example EU"]}
    # depends_on a component waits for every resource inside it: each DNS record, the
    # gateway's activation (Postfix reloaded with the new configuration).
    records = {r.urn for r in program.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    [activate] = [r for r in program.of_type("command:remote:Command") if r.name.endswith("-activate")]
    assert records and dns.urn and gateway.urn
    for resource in (*domains, server):
        assert resource.parent == component.urn
        assert records | {activate.urn} <= set(resource.dependencies), "Odoo is told after DNS and the gateways exist"
        assert resource.inputs["url"] == "https://odoo.example.net" and resource.inputs["database"] == "prod"
        assert rpc.is_rpc_secret(resource.inputs["password"]) and rpc.unwrap_rpc_secret(resource.inputs["password"]) == "odoo-admin-pw"
    assert {d.urn for d in domains} <= set(server.dependencies), "the outgoing server after the alias domains"
    assert {k: server.inputs[k] for k in ("smtpHost", "smtpPort", "smtpEncryption", "smtpUser", "fromFilter")} == {
        "smtpHost": "mx1.example.net", "smtpPort": 587, "smtpEncryption": "starttls", "smtpUser": "odoo", "fromFilter": "example.net,example.org"}
    assert rpc.unwrap_rpc_secret(server.inputs["smtpPass"]) == "smtp-pw" and rpc.is_rpc_secret(server.inputs["smtpPass"])


def test_the_provider_travels_pickled_without_secrets() -> None:
    program = run(BASE)
    serialized = base64.b64decode(rpc.unwrap_rpc_secret(program.of_type(ALIAS_DOMAIN)[0].inputs["__provider"]))
    provider = dill.loads(serialized)
    assert type(provider) is OdooSettingProvider and vars(provider) == {}
    assert b"mailstack.providers.odoo" in serialized and b"odoo-admin-pw" not in serialized


def test_imap_mode_declares_the_incoming_server() -> None:
    values = {**BASE, "odoo": {**BASE["odoo"], "manage": ["incomingServer"], "companies": {}}, "outbound": ["microsoft"],
              "inbound": {"mode": "imap", "mx": "microsoft", "imap": {"host": "outlook.office365.com", "user": "odoo@example.net", "interval": 2}}}
    values.pop("gateways")
    values.pop("gateway")
    values["outbound"] = [{"type": "microsoft", "tenant": "example"}]
    [incoming] = run(values).of_type(INCOMING)
    assert {k: incoming.inputs[k] for k in ("server", "port", "isSsl", "user", "interval")} == {
        "server": "outlook.office365.com", "port": 993, "isSsl": True, "user": "odoo@example.net", "interval": 2}
    assert rpc.unwrap_rpc_secret(incoming.inputs["imapPassword"]) == "imap-pw"


def test_nothing_is_managed_by_default() -> None:
    values = {**BASE, "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod"}}
    program = run(values, {})
    assert program.of_type("mailstack:odoo:Settings") == [] and program.of_type(ALIAS_DOMAIN) == []


@pytest.mark.parametrize(("secrets", "message"), [
    ({}, "mailstack:odooPassword: is required when mailstack:odoo.manage is set"),
    ({"mailstack:odooPassword": "x"}, "mailstack:imapPassword: is required when odoo.manage lists incomingServer"),
])
def test_missing_secrets_are_clear_errors(secrets: dict[str, str], message: str) -> None:
    values = {**BASE, "odoo": {**BASE["odoo"], "manage": ["aliasDomains", "incomingServer"], "companies": {}},
              "inbound": {"mode": "imap", "imap": {"host": "imap.example.net", "user": "odoo"}}}
    values.pop("gateway")
    values.pop("gateways")
    values["outbound"] = [{"type": "microsoft", "tenant": "example"}]
    with pytest.raises(pulumi.RunError, match=message):
        run(values, secrets)
