"""The Pulumi program under mocks: the exact Cloudflare records each declaration creates.

Every stack file in stacks/ is run (new stacks are covered automatically), plus inline
declarations whose records are spelled out by hand from Odoo's documentation
(shared/design.md §2-3), so a change in the plan that breaks an Odoo fact fails here
even if the plan and the program agree with each other.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pulumi
import pytest
from cryptography.hazmat.primitives import serialization

from mailstack import plan
from mailstack.config import stackfile
from mailstack.core import txt
from mailstack.core.model import MailDomain, SenderKind
from mailstack.core.record import Record
from mailstack.rules import protection
from tests import project
from tests.pulumi_harness import (
    PRIVATE_KEY_TOKEN,
    ZONE_TOKEN,
    Mocks,
    ProgramRun,
    Registered,
    run_program,
    stack_config,
    zone_id_for,
)

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
#: pulumi_cloudflare warns about its own deprecated resources when imported.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STACK_FILES = project.all_stacks()


def cf_records(run: ProgramRun) -> list[Registered]:
    return run.of_type(RECORD)


def txt_strings(content: str) -> list[str]:
    """Parse Cloudflare's TXT content with dnspython (independent of modules.txt)."""
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, content)
    return [s.decode("ascii") for s in rdata.strings]  # type: ignore[attr-defined]


def plain(record: Registered) -> tuple[str, str, str, float, float | None]:
    """(name, type, plain content, ttl, priority) of a registered Cloudflare record."""
    inputs = record.inputs
    content = inputs["content"]
    if inputs["type"] == "TXT":
        content = "".join(txt_strings(content))
    return inputs["name"], inputs["type"], content, inputs["ttl"], inputs.get("priority")


def der_base64(pem: str) -> str:
    key = serialization.load_pem_public_key(pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def config_of(values: dict[str, Any]) -> dict[str, str]:
    """Structured values as the engine hands them over: JSON strings."""
    return {f"mailstack:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def run_inline(values: dict[str, Any]) -> ProgramRun:
    return run_program(config=config_of(values))


# --- every shipped stack ------------------------------------------------------------


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=[p.name for p in STACK_FILES])
def test_every_stack_runs_and_matches_its_plan(stack_file: Path) -> None:
    stack = stackfile.load(stack_file)
    run = run_program(stack_file)

    # Exports: the planned records (placeholder key where Pulumi generates it).
    planned = plan.build(stack)
    assert run.exports["records"] == [r.as_json() for r in planned.records]

    if stack.dns.provider != "cloudflare":
        assert cf_records(run) == [], "an rfc2136 stack must not touch Cloudflare"
        return
    _assert_cloudflare_records(stack, run)


def _assert_cloudflare_records(stack: MailDomain, run: ProgramRun) -> None:
    records = cf_records(run)
    gateway_pem = run.exports.get("dkimPublicKeyPem")
    if gateway_pem is not None:
        assert gateway_pem in run.public_keys.values(), "the exported key is the generated tls.PrivateKey's"
    expected = plan.build(stack, gateway_pem).records
    assert sorted(plain(r) for r in records) == sorted(
        (r.name, r.type, r.content, float(r.ttl), None if r.priority is None else float(r.priority)) for r in expected
    )

    zones = plan.build(stack).managed_zones
    zone_calls = [c for c in run.calls if c.token == ZONE_TOKEN]
    assert sorted(c.args["filter"]["name"] for c in zone_calls) == sorted(zones)
    assert all(c.args["filter"]["match"] == "all" for c in zone_calls)
    assert run.exports["zoneIds"] == {z: zone_id_for(z) for z in zones}

    component = [r for r in run.resources if r.type == "mailstack:dns:CloudflareRecords"]
    assert len(component) == 1
    for record in records:
        inputs = record.inputs
        name = inputs["name"]
        assert name == name.lower() and not name.endswith("."), name
        assert inputs["proxied"] is False
        assert inputs["comment"] == "managed by mailstack"
        assert inputs["ttl"] == float(stack.dns.ttl)
        assert inputs["zoneId"] == zone_id_for(stack.dns.zone_of(name))
        mail_critical = protection.mail_purpose(Record(name, inputs["type"], txt.unquote(inputs["content"]), 0)) is not None
        assert record.protect is (mail_critical and not stack.dns.allow_delete), f"{record.name}: protect={record.protect}"
        assert record.parent == component[0].urn
        if inputs["type"] == "TXT":
            strings = txt_strings(inputs["content"])
            assert all(len(s) <= 255 for s in strings)
            # Cloudflare's own form: every string quoted, one space between them.
            assert inputs["content"] == " ".join(f'"{s}"' for s in strings)
            assert "<generated-by-pulumi>" not in inputs["content"]
        else:
            assert not inputs["content"].endswith("."), inputs["content"]
        if inputs["type"] == "MX":
            assert isinstance(inputs["priority"], float)
        else:
            assert inputs.get("priority") is None

    spf_per_name = Counter(p[0] for p in map(plain, records) if p[1] == "TXT" and p[2].startswith("v=spf1"))
    assert all(count == 1 for count in spf_per_name.values()), spf_per_name
    names = Counter(r.inputs["name"] for r in records)
    for record in records:
        if record.inputs["type"] == "CNAME":
            assert names[record.inputs["name"]] == 1, f"CNAME beside other records at {record.inputs['name']}"


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=[p.name for p in STACK_FILES])
def test_every_stack_follows_odoo_documentation(stack_file: Path) -> None:
    """The Odoo facts, checked on every stack that uses Odoo's servers or inbound."""
    stack = stackfile.load(stack_file)
    run = run_program(stack_file)
    if stack.dns.provider == "cloudflare":
        found = {(n, t, c, p) for n, t, c, _ttl, p in map(plain, cf_records(run))}
    else:  # rfc2136: not Cloudflare; check the planned records the program exports
        found = {
            (r["name"], r["type"], r["content"], None if r["priority"] is None else float(r["priority"]))
            for r in run.exports["records"]
        }
    assert found
    for domain in stack.domains:
        if stack.sends_via(SenderKind.ODOO):
            spf = [c for n, t, c, _ in found if n == domain and t == "TXT" and c.startswith("v=spf1")]
            assert len(spf) == 1 and "include:_spf.odoo.com" in spf[0].split()
            assert (f"odoo._domainkey.{domain}", "CNAME", "odoo._domainkey.odoo.com", None) in found
        if stack.inbound.mode.value == "odoo-mx":
            inbound = f"{stack.inbound.subdomain}.{domain}"
            host = stack.odoo.host or f"{stack.odoo.database}.odoo.com"
            if stack.inbound.record == "mx":
                assert (inbound, "MX", host, 10.0) in found
            else:
                assert (inbound, "CNAME", host, None) in found
            assert not any(n == domain and t == "MX" for n, t, _, _ in found), "Odoo inbound never at the root"


def test_stack_files_cover_the_required_setups() -> None:
    """The issue asks for example stacks of five setups; keep them shipped."""
    stacks = [stackfile.load(p) for p in STACK_FILES]
    hostings = {s.odoo.hosting.value for s in stacks}
    assert {"online", "sh", "onpremise"} <= hostings
    assert any(len(s.gateways) >= 2 and s.inbound.mode.value == "gateway" for s in stacks)
    assert any(s.alias_domains for s in stacks)
    assert any(s.sends_via(SenderKind.MICROSOFT) or s.sends_via(SenderKind.GOOGLE) for s in stacks)


# --- exact records, spelled out from the documentation --------------------------------


def test_online_exact_records() -> None:
    run = run_inline(
        {
            "domain": "example.com",
            "odoo": {"hosting": "online", "database": "examplecorp"},
            "outbound": ["odoo"],
            "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
            "dmarc": {"policy": "none", "rua": ["mailto:postmaster@example.com"]},
            "dns": {"zone": "example.com", "ttl": 300},
        }
    )
    found = sorted(plain(r) for r in cf_records(run))
    assert found == sorted(
        [
            ("example.com", "TXT", "v=spf1 include:_spf.odoo.com ~all", 300.0, None),
            ("odoo._domainkey.example.com", "CNAME", "odoo._domainkey.odoo.com", 300.0, None),
            ("_dmarc.example.com", "TXT", "v=DMARC1; p=none; rua=mailto:postmaster@example.com", 300.0, None),
            ("mail.example.com", "MX", "examplecorp.odoo.com", 300.0, 10.0),
            # Odoo 17 sends from the alias domain too: it needs SPF and DKIM as well.
            ("mail.example.com", "TXT", "v=spf1 include:_spf.odoo.com ~all", 300.0, None),
            ("odoo._domainkey.mail.example.com", "CNAME", "odoo._domainkey.odoo.com", 300.0, None),
        ]
    )
    by_name = {(r.inputs["name"], r.inputs["type"]): r for r in cf_records(run)}
    assert by_name[("example.com", "TXT")].inputs["content"] == '"v=spf1 include:_spf.odoo.com ~all"'
    assert by_name[("mail.example.com", "MX")].protect is True
    assert by_name[("mail.example.com", "MX")].inputs["priority"] == 10.0
    # Every mail-critical record is protected, on Cloudflare as on RFC 2136 (one rule:
    # mailstack.rules.protection): deleting the DKIM CNAME breaks DMARC for Odoo's mail.
    assert by_name[("odoo._domainkey.example.com", "CNAME")].protect is True
    assert by_name[("example.com", "TXT")].protect is True
    assert all(r.inputs["zoneId"] == "zone-example-com" for r in cf_records(run))
    assert [c.args for c in run.calls if c.token == ZONE_TOKEN] == [{"filter": {"name": "example.com", "match": "all"}}]
    assert run.of_type(PRIVATE_KEY_TOKEN) == [], "no gateway, no DKIM key"


def test_odoo_sh_cname_inbound_excludes_other_records_at_that_name() -> None:
    run = run_inline(
        {
            "domain": "shop.example.org",
            "odoo": {"hosting": "sh", "database": "example-shop"},
            "outbound": ["odoo"],
            "inbound": {"mode": "odoo-mx", "subdomain": "mail", "record": "cname"},
            "spf": {"all": "-all"},
            "dns": {"zone": "example.org", "ttl": 1},
        }
    )
    found = sorted(plain(r) for r in cf_records(run))
    assert ("mail.shop.example.org", "CNAME", "example-shop.odoo.com", 1.0, None) in found
    assert [f for f in found if f[0] == "mail.shop.example.org"] == [
        ("mail.shop.example.org", "CNAME", "example-shop.odoo.com", 1.0, None)
    ]
    assert ("shop.example.org", "TXT", "v=spf1 include:_spf.odoo.com -all", 1.0, None) in found
    assert ("odoo._domainkey.shop.example.org", "CNAME", "odoo._domainkey.odoo.com", 1.0, None) in found
    assert all(r.inputs["zoneId"] == "zone-example-org" for r in cf_records(run))


def test_onpremise_gateways_dkim_from_generated_key() -> None:
    run = run_inline(
        {
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway"},
            "gateways": [
                {"hostname": "mx1.example.net", "ipv4": "192.0.2.10", "ipv6": "2001:db8::10", "priority": 10},
                {"hostname": "mx2.example.net", "ipv4": "198.51.100.20", "priority": 20},
            ],
            "dkim": {"selector": "odoo2026", "bits": 2048},
            "dmarc": {"policy": "reject", "rua": ["mailto:dmarc@example.net"]},
        }
    )
    keys = run.of_type(PRIVATE_KEY_TOKEN)
    assert len(keys) == 1 and keys[0].inputs["algorithm"] == "RSA" and keys[0].inputs["rsaBits"] == 2048.0
    pem = run.public_keys[keys[0].name]
    records = {(r.inputs["name"], r.inputs["type"], r.inputs["content"]): r for r in cf_records(run)}
    found = sorted(plain(r) for r in cf_records(run))
    assert [f for f in found if f[1] == "MX"] == [
        ("example.net", "MX", "mx1.example.net", 3600.0, 10.0),
        ("example.net", "MX", "mx2.example.net", 3600.0, 20.0),
    ]
    assert ("example.net", "TXT", "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ip4:198.51.100.20 ~all", 3600.0, None) in found
    assert ("mx1.example.net", "A", "192.0.2.10", 3600.0, None) in found
    assert ("mx1.example.net", "AAAA", "2001:db8::10", 3600.0, None) in found
    assert ("mx2.example.net", "A", "198.51.100.20", 3600.0, None) in found
    assert not any(f[2].startswith("include:_spf.odoo.com") or "_spf.odoo.com" in f[2] for f in found)
    dkim = [r for (n, t, _), r in records.items() if n == "odoo2026._domainkey.example.net"]
    assert len(dkim) == 1 and dkim[0].inputs["type"] == "TXT"
    strings = txt_strings(dkim[0].inputs["content"])
    assert len(strings) == 2 and len(strings[0]) == 255, "a 2048-bit key needs two character-strings"
    assert "".join(strings) == f"v=DKIM1; k=rsa; p={der_base64(pem)}"
    assert all(r.protect for r in cf_records(run) if r.inputs["type"] == "MX")
    assert run.exports["dkimSelector"] == "odoo2026"
    assert run.exports["dkimPublicKeyPem"] == pem


def test_equal_priority_gateways_get_distinct_resources() -> None:
    run = run_inline(
        {
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway"},
            "gateways": [
                {"hostname": "mx1.example.net", "ipv4": "192.0.2.10", "priority": 10},
                {"hostname": "mx2.example.net", "ipv4": "192.0.2.11", "priority": 10},
            ],
        }
    )
    mx = sorted(plain(r) for r in cf_records(run) if r.inputs["type"] == "MX")
    assert [m[2] for m in mx] == ["mx1.example.net", "mx2.example.net"]
    names = [r.name for r in cf_records(run)]
    assert len(names) == len(set(names))


def test_microsoft_and_google_profiles() -> None:
    key = stackfile.load(project.stack_path("onpremise-m365")).sender(SenderKind.GOOGLE)
    assert key is not None and key.dkim_key
    run = run_inline(
        {
            "domain": "contoso.example",
            "odoo": {"hosting": "onpremise", "url": "https://erp.contoso.example"},
            "outbound": [{"type": "microsoft", "tenant": "contoso"}, {"type": "google", "dkimKey": key.dkim_key}],
            "inbound": {"mode": "imap", "mx": "microsoft"},
        }
    )
    found = sorted(plain(r) for r in cf_records(run))
    assert ("contoso.example", "TXT", "v=spf1 include:spf.protection.outlook.com include:_spf.google.com ~all", 3600.0, None) in found
    assert ("selector1._domainkey.contoso.example", "CNAME", "selector1-contoso-example._domainkey.contoso.onmicrosoft.com", 3600.0, None) in found
    assert ("selector2._domainkey.contoso.example", "CNAME", "selector2-contoso-example._domainkey.contoso.onmicrosoft.com", 3600.0, None) in found
    assert ("google._domainkey.contoso.example", "TXT", f"v=DKIM1; k=rsa; p={key.dkim_key}", 3600.0, None) in found
    assert ("contoso.example", "MX", "contoso-example.mail.protection.outlook.com", 3600.0, 0.0) in found


def test_alias_domains_get_their_own_zone_and_full_set() -> None:
    run = run_inline(
        {
            "domain": "group.example",
            "aliasDomains": ["brand-a.example", "shop.group.example"],
            "odoo": {"hosting": "online", "database": "group"},
            "outbound": ["odoo"],
            "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
            "dmarc": {"policy": "quarantine", "rua": ["mailto:dmarc@group.example"]},
        }
    )
    records = cf_records(run)
    zone_of = {r.inputs["name"]: r.inputs["zoneId"] for r in records}
    assert zone_of["_dmarc.brand-a.example"] == "zone-brand-a-example"
    assert zone_of["odoo._domainkey.mail.brand-a.example"] == "zone-brand-a-example"
    assert zone_of["mail.shop.group.example"] == "zone-group-example"
    assert zone_of["brand-a.example._report._dmarc.group.example"] == "zone-group-example"
    assert sorted(c.args["filter"]["name"] for c in run.calls if c.token == ZONE_TOKEN) == ["brand-a.example", "group.example"]
    found = {plain(r)[:3] for r in records}
    for domain in ("group.example", "brand-a.example", "shop.group.example"):
        assert (domain, "TXT", "v=spf1 include:_spf.odoo.com ~all") in found
        assert (f"odoo._domainkey.{domain}", "CNAME", "odoo._domainkey.odoo.com") in found
        assert (f"mail.{domain}", "MX", "group.odoo.com") in found
        assert (f"_dmarc.{domain}", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@group.example") in found
    # brand-a is outside the report domain, so group.example authorises its reports.
    assert ("brand-a.example._report._dmarc.group.example", "TXT", "v=DMARC1") in found


def test_config_error_stops_before_any_resource() -> None:
    config = config_of(
        {
            "domain": "example.com",
            "odoo": {"hosting": "online", "database": "db"},
            "outbound": ["odoo"],
            "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
            "dmarc": {"policy": "rejectt"},
        }
    )
    mocks = Mocks()
    with pytest.raises(pulumi.RunError) as excinfo:
        run_program(config=config, mocks=mocks)
    assert str(excinfo.value) == "mailstack:dmarc.policy: 'rejectt' is not one of none, quarantine, reject"
    assert mocks.resources == [] and mocks.calls == []


def test_spf_over_budget_refused_before_any_resource() -> None:
    terms = " ".join(f"include:spf{i}.example.net" for i in range(10))
    config = config_of(
        {
            "domain": "example.com",
            "odoo": {"hosting": "online", "database": "db"},
            "outbound": ["odoo", {"spf": terms}],
            "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
        }
    )
    mocks = Mocks()
    with pytest.raises(pulumi.RunError, match=r"mailstack:outbound: .*11 DNS lookups.*limit of 10"):
        run_program(config=config, mocks=mocks)
    assert mocks.resources == []


def test_secret_config_keys_are_not_unknown() -> None:
    """A secure value (the engine's secret) of a known key passes; the harness marks it secret."""
    config, secrets = stack_config(project.stack_path("online"))
    assert "cloudflare:apiToken" in secrets
    run = run_program(
        config={**config, "mailstack:tsigSecret": "c2VjcmV0"}, secret_keys=[*secrets, "mailstack:tsigSecret"]
    )
    assert cf_records(run)


def test_engine_boolean_strings() -> None:
    """The engine hands a top-level YAML boolean over as the string "true"."""
    run = run_program(
        config={
            **config_of(
                {
                    "domain": "example.net",
                    "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod"},
                    "outbound": ["gateway"],
                    "inbound": {"mode": "gateway"},
                    "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.1"}],
                }
            ),
            "mailstack:mtaSts": "true",
        }
    )
    assert "_mta-sts.example.net" in {r.inputs["name"] for r in cf_records(run)}


# -- adopting records that already exist on Cloudflare ------------------------------------

ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
SPF_ID, MX_ID = "372e67954025e0ba6aaa6d586b9e0b59", "9b2542913adbe8c0e50fc6d755cd4c9c"


def _online_with_dns(**dns: Any) -> dict[str, str]:
    config, _ = stack_config(project.stack_path("online"))
    config["mailstack:dns"] = json.dumps({"provider": "cloudflare", "zone": "example.com", "ttl": 3600, **dns})
    return config


def test_adopt_sets_the_import_option_for_exactly_the_listed_records() -> None:
    adopt = {"txt-example.com": f"{ZONE_ID}/{SPF_ID}", "mx-mail.example.com-10-examplecorp.odoo.com": f"{ZONE_ID}/{MX_ID}"}
    run = run_program(project.stack_path("online"), config=_online_with_dns(adopt=adopt))
    imported = {(r.inputs["name"], r.inputs["type"]): r.import_id for r in cf_records(run) if r.import_id}
    assert imported == {("example.com", "TXT"): f"{ZONE_ID}/{SPF_ID}", ("mail.example.com", "MX"): f"{ZONE_ID}/{MX_ID}"}
    assert len(cf_records(run)) == 6 and sum(1 for r in cf_records(run) if r.import_id is None) == 4
    # the adopted records are registered with the planned inputs, as Pulumi's import compares them
    spf = next(r for r in cf_records(run) if r.import_id == f"{ZONE_ID}/{SPF_ID}")
    assert txt_strings(spf.inputs["content"]) == ["v=spf1 include:_spf.odoo.com ~all"] and spf.protect
    without = run_program(project.stack_path("online"))
    assert all(r.import_id is None for r in cf_records(without))


def test_adopt_ids_and_keys_are_validated_before_any_resource() -> None:
    with pytest.raises(pulumi.RunError, match=r"mailstack:dns.adopt.txt-example.com: 'abc' is not a Cloudflare import id"):
        run_program(project.stack_path("online"), config=_online_with_dns(adopt={"txt-example.com": "abc"}))
    with pytest.raises(pulumi.RunError, match=r"mailstack:dns.adopt.txt-www.example.com: txt-www.example.com is not a record this stack plans \(its keys: "):
        run_program(project.stack_path("online"), config=_online_with_dns(adopt={"txt-www.example.com": f"{ZONE_ID}/{SPF_ID}"}))


def test_dane_tlsa_records_are_cloudflare_data_current_and_next() -> None:
    current, following = "ab" * 32, "cd" * 32
    run = run_inline(
        {
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway"},
            "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
            "gateway": {"mailgate": {"login": "admin"}, "tls": {"dane": {"digest": current, "next": following}}},
        }
    )
    tlsa = [r for r in cf_records(run) if r.inputs["type"] == "TLSA"]
    assert sorted(r.inputs["data"]["certificate"] for r in tlsa) == [current, following]
    assert {r.inputs["name"] for r in tlsa} == {"_25._tcp.mx1.example.net"}
    assert all((r.inputs["data"]["usage"], r.inputs["data"]["selector"], r.inputs["data"]["matchingType"]) == (3, 1, 1) for r in tlsa)
    assert all("content" not in r.inputs for r in tlsa)
