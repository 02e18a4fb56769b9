"""The provider of Odoo's mail settings, through its methods, against the Odoo stand-in
(a real process answering Odoo 17's XML-RPC on 127.0.113.0/24): create, read, diff,
update and delete, touching only the records mailstack marked as its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.lab.odoo import OdooStandIn
from mailstack.odoo import desired, records
from mailstack.odoo.client import OdooClient, OdooRefused, OdooUnreachable
from mailstack.providers.odoo import OdooSettingProvider, alias_domain_props, mail_server_props
from tests.ports import free_port
from tests.test_rfc2136_grpc import plain, struct

ADDRESS = "127.0.113.60"
PASSWORD = "provider-pw-Xq2"


@pytest.fixture
def odoo(tmp_path: Path) -> Iterator[OdooStandIn]:
    standin = OdooStandIn(tmp_path / "odoo", ADDRESS, free_port(ADDRESS), password=PASSWORD, company="Acme",
                          aliases=["sales@legacy.test"])
    with standin:
        yield standin


def rpc(odoo: OdooStandIn) -> OdooClient:
    return OdooClient(odoo.url, "odoo", "admin", PASSWORD)


def common(odoo: OdooStandIn, **extra: Any) -> dict[str, Any]:
    return {"url": odoo.url, "database": "odoo", "login": "admin", "password": PASSWORD, "adopt": False, **extra}


def stack(odoo_url: str, **odoo_extra: Any) -> planning.Plan:
    return planning.build(from_config({
        "domain": "example.net", "aliasDomains": ["example.org"],
        "odoo": {"hosting": "onpremise", "url": odoo_url, "database": "odoo", "manage": ["aliasDomains", "outgoingServer"], **odoo_extra},
        "outbound": ["gateway"], "inbound": {"mode": "gateway", "aliases": ["sales"]},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
        "gateway": {"odooAddresses": ["192.0.2.20"]},
    }))


def test_desired_settings_follow_the_stack(odoo: OdooStandIn) -> None:
    wanted = desired.desired(stack(odoo.url, companies={"Acme": "example.org"}))
    assert [(d.key, d.name, d.companies) for d in wanted.alias_domains] == [
        ("alias_domain_example_net", "example.net", ()), ("alias_domain_example_org", "example.org", ("Acme",))]
    server = wanted.mail_server
    assert server is not None and (server.smtp_host, server.smtp_port, server.smtp_encryption) == ("mx1.example.net", 587, "none")
    assert server.from_filter == "example.net,example.org" and wanted.incoming_server is None


def test_alias_domain_lifecycle_with_a_company(odoo: OdooStandIn) -> None:
    provider = OdooSettingProvider()
    spec = desired.desired(stack(odoo.url, companies={"Acme": "example.org"})).alias_domains[1]
    checked = provider.check({}, {**common(odoo), **alias_domain_props(spec)})
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert created.id == "mailstack.alias_domain_example_org"
    outs = created.outs
    client = rpc(odoo)
    domain = client.search_read("mail.alias.domain", [["name", "=", "example.org"]], ["id", "bounce_email"])[0]
    assert outs["recordId"] == domain["id"] and domain["bounce_email"] == "bounce@example.org"
    acme = client.search_read("res.company", [["name", "=", "Acme"]], ["alias_domain_id"])[0]
    assert acme["alias_domain_id"][0] == domain["id"]
    assert outs["companiesBefore"] == {str(acme["id"]): 1}  # legacy.test, the database's first domain

    read = provider.read(created.id, outs)
    assert read.id == created.id and read.outs["bounceAlias"] == "bounce" and read.outs["companies"] == ["Acme"]
    news = {**checked.inputs, "catchallAlias": "replies", "companies": []}
    diff = provider.diff(created.id, outs, news)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, outs, news)
    assert client.search_read("mail.alias.domain", [["id", "=", domain["id"]]], ["catchall_email"])[0]["catchall_email"] == "replies@example.org"
    assert client.search_read("res.company", [["id", "=", acme["id"]]], ["alias_domain_id"])[0]["alias_domain_id"][0] == 1

    assert provider.diff(created.id, updated.outs, {**news, "url": "http://127.0.113.61:8069"}).replaces == ["url"]
    provider.delete(created.id, updated.outs)
    assert client.search_read("mail.alias.domain", [["name", "=", "example.org"]], ["id"]) == []
    assert client.search_read("ir.model.data", [["module", "=", "mailstack"]], ["name"]) == []
    assert provider.read(created.id, updated.outs).id == ""  # gone: Pulumi will create it again


def test_a_record_mailstack_did_not_create_is_refused_or_adopted_and_given_back(odoo: OdooStandIn) -> None:
    provider = OdooSettingProvider()
    client = rpc(odoo)
    theirs = client.call("mail.alias.domain", "create", {"name": "example.net", "catchall_alias": "reply"})
    props = {**common(odoo), **alias_domain_props(desired.desired(stack(odoo.url)).alias_domains[0])}
    with pytest.raises(Exception, match="mailstack did not create; mailstack touches only the records it created"):
        provider.create(props)
    assert client.search_read("mail.alias.domain", [["id", "=", theirs]], ["catchall_alias"])[0]["catchall_alias"] == "reply"
    adopted = provider.create({**props, "adopt": True})
    assert adopted.outs["adopted"] is True and adopted.outs["recordId"] == theirs
    assert client.search_read("mail.alias.domain", [["id", "=", theirs]], ["catchall_alias"])[0]["catchall_alias"] == "catchall"
    provider.delete(adopted.id, adopted.outs)
    left = client.search_read("mail.alias.domain", [["id", "=", theirs]], ["catchall_alias"])
    assert left == [{"id": theirs, "catchall_alias": "reply"}]  # given back, not deleted


def test_odoo_refuses_to_delete_a_domain_its_aliases_use(odoo: OdooStandIn) -> None:
    provider = OdooSettingProvider()
    props = {**common(odoo), **alias_domain_props(desired.desired(stack(odoo.url)).alias_domains[0])}
    created = provider.create(props)
    client = rpc(odoo)
    model = client.call("ir.model", "search", [["model", "=", "crm.lead"]])[0]
    client.call("mail.alias", "create", {"alias_name": "quotes", "alias_model_id": model, "alias_domain_id": created.outs["recordId"]})
    with pytest.raises(Exception, match="refuses to delete mail.alias.domain 'example.net'.*move them to another alias domain first"):
        provider.delete(created.id, created.outs)


def test_mail_server_with_its_secret_and_from_filter(odoo: OdooStandIn) -> None:
    provider = OdooSettingProvider()
    spec = desired.desired(stack(odoo.url)).mail_server
    assert spec is not None
    props = provider.check({}, {**common(odoo), **mail_server_props(spec), "smtpPass": "smtp-secret"}).inputs
    created = provider.create(props)
    live = rpc(odoo).search_read("ir.mail_server", [["id", "=", created.outs["recordId"]]], ["smtp_host", "from_filter", "smtp_pass"])[0]
    assert live == {"id": created.outs["recordId"], "smtp_host": "mx1.example.net", "from_filter": "example.net,example.org", "smtp_pass": "smtp-secret"}
    read = provider.read(created.id, created.outs).outs
    assert read["smtpPass"] == "smtp-secret"  # the declared secret is kept, not read back
    provider.delete(created.id, created.outs)
    assert rpc(odoo).search_read("ir.mail_server", [], ["id"]) == []


def test_check_refuses_bad_inputs_without_showing_the_secret(odoo: OdooStandIn) -> None:
    failures = OdooSettingProvider().check({}, {**common(odoo), "kind": "mailServer", "key": "a.b", "name": "x", "url": "ftp://x",
                                                "smtpHost": "not a host", "smtpPort": 70000, "smtpEncryption": "tls"}).failures
    assert {f.property for f in failures} == {"url", "key", "smtpHost", "smtpPort", "smtpEncryption"}
    assert all(PASSWORD not in f.reason for f in failures)


def test_client_errors_say_what_happened_without_the_password(odoo: OdooStandIn) -> None:
    with pytest.raises(OdooRefused, match="refused the login") as denied:
        OdooClient(odoo.url, "odoo", "admin", "wrong").call("mail.alias", "search", [])
    assert denied.value.code == 3
    with pytest.raises(OdooUnreachable, match="Connection refused"):
        OdooClient(f"http://{ADDRESS}:1", "odoo", "admin", PASSWORD).version()
    with pytest.raises(OdooRefused) as fault:
        rpc(odoo).call("mail.alias.domain", "create", {"name": "bad domain"})
    assert fault.value.code == 2 and "unaccented latin characters" in fault.value.message
    assert isinstance(rpc(odoo).version()["server_version"], str)
    assert records.record_id({"key": "x"}) == "mailstack.x"


URN = "urn:pulumi:test::mailstack::mailstack:odoo:Settings$pulumi-python:dynamic/mailstack:OdooAliasDomain::odoo-alias-domain-example-net"


@pytest.fixture
def provider_host(tmp_path: Path) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """Pulumi's own dynamic-provider host in a separate process, as the engine runs it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"], cwd=tmp_path, stdout=subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{int(process.stdout.readline().decode().strip())}")
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_engine_lifecycle_through_the_dynamic_provider_host(odoo: OdooStandIn, provider_host: provider_pb2_grpc.ResourceProviderStub) -> None:
    provider = serialize_provider(OdooSettingProvider())
    spec = desired.desired(stack(odoo.url)).alias_domains[0]
    news = {**common(odoo), **alias_domain_props(spec), "__provider": provider}
    checked = provider_host.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    assert list(checked.failures) == []
    created = provider_host.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    state = plain(created.properties)
    assert created.id == "mailstack.alias_domain_example_net" and state["__provider"] == provider
    assert state["password"] == PASSWORD and state["recordId"] >= 1  # full state back, secret included (encrypted by the engine)
    read = provider_host.Read(provider_pb2.ReadRequest(id=created.id, urn=URN, properties=created.properties))
    assert plain(read.properties)["name"] == "example.net"
    changed = provider_host.Check(provider_pb2.CheckRequest(urn=URN, olds=created.properties, news=struct({**news, "defaultFrom": "odoo"})))
    diff = provider_host.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=changed.inputs))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    updated = provider_host.Update(provider_pb2.UpdateRequest(id=created.id, urn=URN, olds=created.properties, news=changed.inputs))
    assert rpc(odoo).search_read("mail.alias.domain", [["name", "=", "example.net"]], ["default_from_email"])[0]["default_from_email"] == "odoo@example.net"
    provider_host.Delete(provider_pb2.DeleteRequest(id=created.id, urn=URN, properties=updated.properties))
    assert rpc(odoo).search_read("mail.alias.domain", [["name", "=", "example.net"]], ["id"]) == []


def test_odoos_refusal_reaches_the_engine_without_the_password(odoo: OdooStandIn, provider_host: provider_pb2_grpc.ResourceProviderStub) -> None:
    news = {**common(odoo, password="not-" + PASSWORD), **alias_domain_props(desired.desired(stack(odoo.url)).alias_domains[0]),
            "__provider": serialize_provider(OdooSettingProvider())}
    checked = provider_host.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    with pytest.raises(grpc.RpcError) as caught:
        provider_host.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    assert "Odoo refused the login 'admin'" in caught.value.details() and PASSWORD not in caught.value.details()
