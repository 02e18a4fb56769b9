"""The policy pack, called directly: every shipped stack passes, each broken variant is
refused by the policy that owns the rule, with a message naming the record.

The resources are those ``__main__.py`` registers under Pulumi's mocks
(``tests/pulumi_harness.py``), handed to ``policy.validate`` the way the policy SDK's
analyzer does (``ResourceValidationArgs`` / ``StackValidationArgs``), so what is tested
is what ``pulumi preview --policy-pack policy`` would run.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pulumi.runtime
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from mailstack.config import stackfile
from mailstack.core import txt, zonefile
from mailstack.core.record import Record
from mailstack.policy import policies
from mailstack.policy.context import PREVIOUS_RECORDS_ENV
from mailstack.rules import dkim, spf
from tests import project
from tests.project import planned as plan
from tests.pulumi_harness import (
    Registered,
    public_pem,
    rsa_key,
    run_program,
    stack_config,
)

CF = "cloudflare:index/dnsRecord:DnsRecord"
DYNAMIC = "pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords"
STACKS = project.all_stacks()
POLICY_DIR = Path(__file__).resolve().parent.parent / "policy"

Violation = tuple[str, str, str | None]  # policy name, message, urn


# -- building the SDK's argument objects ------------------------------------------------


def _opts(resource: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(resource.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], resource.parent or None)


def resource_args(resource: Registered, config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource.type, resource.inputs, resource.urn, resource.name, _opts(resource), None, config)


def stack_args(resources: Iterable[Registered], config: Mapping[str, Any] | None = None) -> StackValidationArgs:
    items = [PolicyResource(r.type, r.inputs, r.urn, r.name, _opts(r), None, None, [], {}) for r in resources]
    return StackValidationArgs(items, config)


def use_config_of(stack_file: Path, **overrides: str) -> None:
    """Make the stack's config the engine config, as Pulumi hands it to a policy pack."""
    config, secrets = stack_config(stack_file)
    pulumi.runtime.set_all_config({**config, **overrides}, secret_keys=secrets)


def violations(resources: list[Registered], config: Mapping[str, Mapping[str, Any]] | None = None) -> list[Violation]:
    """Run every policy of the pack; ``config`` maps policy name to its policy config."""
    found: list[Violation] = []
    config = config or {}
    for policy in policies.all_policies():

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append((name, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                policy.validate(resource_args(resource, config.get(policy.name)), report)
        elif isinstance(policy, StackValidationPolicy):
            try:
                policy.validate(stack_args(resources, config.get(policy.name)), report)
            except _NotApplicableError:
                pass
    return found


def names(found: list[Violation]) -> set[str]:
    return {name for name, _, _ in found}


_RUNS: dict[Path, list[Registered]] = {}


def resources_of(stack_file: Path) -> list[Registered]:
    """The resources the program registers for a stack (one mock run per stack), with
    the stack's config left as the engine config for the stack policies."""
    if stack_file not in _RUNS:
        _RUNS[stack_file] = run_program(stack_file).resources
    use_config_of(stack_file)
    return copy.deepcopy(_RUNS[stack_file])


def record_resource(resources: list[Registered], name: str, rtype: str) -> Registered:
    matches = [r for r in resources if r.inputs.get("name") == name and r.inputs.get("type") == rtype]
    assert len(matches) == 1, f"{name} {rtype}: {len(matches)} resources"
    return matches[0]


def rfc2136_resource(resources: list[Registered]) -> Registered:
    [found] = [r for r in resources if r.type == DYNAMIC]
    return found


def set_values(resources: list[Registered], name: str, rtype: str, values: list[str]) -> None:
    """Replace the values at (name, type) in the RFC 2136 resource's record list."""
    resource = rfc2136_resource(resources)
    items = resource.inputs["records"]
    template = next(i for i in items if (i["name"], i["type"]) == (name, rtype))
    kept = [i for i in items if (i["name"], i["type"]) != (name, rtype)]
    resource.inputs["records"] = kept + [{**template, "value": v} for v in values]


def drop_record(resources: list[Registered], name: str, rtype: str) -> None:
    """Remove a planned record: its Cloudflare resource, or its item of the RFC 2136 list."""
    matches = [r for r in resources if r.inputs.get("name") == name and r.inputs.get("type") == rtype]
    if matches:
        resources.remove(matches[0])
        return
    resource = rfc2136_resource(resources)
    resource.inputs["records"] = [i for i in resource.inputs["records"] if (i["name"], i["type"]) != (name, rtype)]


def only(found: list[Violation], policy: str) -> list[Violation]:
    assert names(found) == {policy}, found
    return found


def small_rsa_key_base64(bits: int) -> str:
    """A syntactically valid RSA public key of any size (cryptography refuses to
    generate keys under 1024 bits, but parses them, as verifiers do)."""
    key = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 12345).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# -- every shipped stack passes ---------------------------------------------------------


@pytest.mark.parametrize("stack_file", STACKS, ids=[p.name for p in STACKS])
def test_every_stack_passes_every_policy(stack_file: Path) -> None:
    resources = resources_of(stack_file)
    records = [r for r in resources if r.type in (CF, DYNAMIC)]
    assert records, "the program registered no DNS record resources"
    assert violations(resources) == []


def test_pack_lists_stable_ids_and_levels() -> None:
    levels = {p.name: p.enforcement_level for p in policies.all_policies()}
    assert len(levels) == len(policies.all_policies()), "duplicate policy names"
    assert levels["spf-size-advised"] is EnforcementLevel.ADVISORY
    assert levels["dkim-key-size-advised"] is EnforcementLevel.ADVISORY
    mandatory = {name for name, level in levels.items() if level is EnforcementLevel.MANDATORY}
    assert {"spf-valid", "txt-cloudflare-form", "dkim-key-valid", "dmarc-valid", "mail-target-not-ip",
            "mail-records-not-proxied", "mx-protected", "spf-single-per-name", "cname-exclusive",
            "domains-authenticated", "planned-records-kept"} <= mandatory


# -- resource policies: each broken variant --------------------------------------------

ONLINE = project.stack_path("online")
ONPREMISE = project.stack_path("onpremise")
ODOO_SH = project.stack_path("odoo-sh")
LAB = project.stack_path("lab")


def test_unquoted_txt_is_refused() -> None:
    resources = resources_of(ONLINE)
    spf_record = record_resource(resources, "example.com", "TXT")
    spf_record.inputs["content"] = txt.unquote(spf_record.inputs["content"])
    (found,) = only(violations(resources), "txt-cloudflare-form")
    assert "example.com" in found[1] and "quoted" in found[1]


def test_long_txt_in_one_string_is_refused() -> None:
    resources = resources_of(ONPREMISE)
    key = record_resource(resources, "odoo2026._domainkey.example.net", "TXT")
    plain = txt.unquote(key.inputs["content"])
    assert len(plain) > 255
    key.inputs["content"] = '"' + plain + '"'
    (found,) = only(violations(resources), "txt-cloudflare-form")
    assert "255" in found[1]


def test_spf_over_lookup_budget_is_refused() -> None:
    resources = resources_of(ONLINE)
    terms = " ".join(f"include:spf{i}.example.org" for i in range(11))
    record_resource(resources, "example.com", "TXT").inputs["content"] = txt.quoted(f"v=spf1 {terms} -all")
    (found,) = only(violations(resources), "spf-valid")
    assert "11 DNS lookups" in found[1] and "example.com" in found[1]


def test_spf_over_512_bytes_is_refused_and_over_450_advised() -> None:
    resources = resources_of(ONLINE)
    spf_record = record_resource(resources, "example.com", "TXT")
    addresses = " ".join(f"ip4:192.0.2.{i}" for i in range(1, 40))
    assert spf.size(f"v=spf1 {addresses} -all") > 512
    spf_record.inputs["content"] = txt.quoted(f"v=spf1 {addresses} -all")
    (found,) = only(violations(resources), "spf-valid")
    assert "over 512" in found[1]

    spf_record.inputs["content"] = txt.quoted(f"v=spf1 {' '.join(f'ip4:192.0.2.{i}' for i in range(100, 130))} -all")
    found_advised = violations(resources)
    assert names(found_advised) == {"spf-size-advised"}, found_advised
    assert "advised 450" in found_advised[0][1]


def test_spf_syntax_error_is_refused() -> None:
    resources = resources_of(ONLINE)
    record_resource(resources, "example.com", "TXT").inputs["content"] = txt.quoted("v=spf1 ip4:300.1.1.1 -all")
    (found,) = only(violations(resources), "spf-valid")
    assert "does not parse" in found[1]


def test_dkim_key_under_1024_bits_is_refused_and_1024_advised() -> None:
    resources = resources_of(ONPREMISE)
    key = record_resource(resources, "odoo2026._domainkey.example.net", "TXT")
    key.inputs["content"] = txt.quoted(f"v=DKIM1; k=rsa; p={small_rsa_key_base64(512)}")
    (found,) = only(violations(resources), "dkim-key-valid")
    assert "512 bits" in found[1]

    key.inputs["content"] = txt.quoted(dkim.txt_value(public_pem(rsa_key(1024))))
    (advised,) = only(violations(resources), "dkim-key-size-advised")
    assert "1024 bits" in advised[1] and "2048" in advised[1]


@pytest.mark.parametrize(
    "content, words",
    [
        ("v=DKIM1; k=rsa; p=not-base64!", "base64"),
        (f"v=DKIM1; k=rsa; p={dkim.PENDING_KEY}", "placeholder"),
        ("v=DKIM1; k=rsa", "no p= tag"),
    ],
)
def test_unusable_dkim_key_record_is_refused(content: str, words: str) -> None:
    resources = resources_of(ONPREMISE)
    record_resource(resources, "odoo2026._domainkey.example.net", "TXT").inputs["content"] = txt.quoted(content)
    (found,) = only(violations(resources), "dkim-key-valid")
    assert words in found[1] and "odoo2026._domainkey.example.net" in found[1]


@pytest.mark.parametrize(
    "content, words",
    [
        ("v=DMARC1; p=maybe", "p='maybe'"),
        ("v=DMARC1; p=reject; pct=150", "pct= was removed by RFC 9989"),
        ("v=DMARC1; p=reject; rf=afrf", "rf= was removed by RFC 9989"),
        ("v=DMARC1; p=reject; ri=3600", "ri= was removed by RFC 9989"),
        ("p=reject; v=DMARC1", "starts with"),
        ("v=DMARC1; p=reject; rua=dmarc@example.com", "report URI"),
    ],
)
def test_invalid_dmarc_is_refused(content: str, words: str) -> None:
    resources = resources_of(ONLINE)
    record_resource(resources, "_dmarc.example.com", "TXT").inputs["content"] = txt.quoted(content)
    (found,) = only(violations(resources), "dmarc-valid")
    assert words in found[1] and "_dmarc.example.com" in found[1]


def test_mx_target_ip_is_refused() -> None:
    resources = resources_of(ONLINE)
    record_resource(resources, "mail.example.com", "MX").inputs["content"] = "192.0.2.1"
    found = violations(resources, {"planned-records-kept": {"allowDelete": True}})
    assert [m for _, m, _ in only(found, "mail-target-not-ip")] == [
        "mail.example.com: MX target 192.0.2.1 is an IP address (RFC 7505, RFC 2181 §10.3)"
    ]
    # Another MX target is also a deletion of the planned MX host.
    assert names(violations(resources)) == {"mail-target-not-ip", "planned-records-kept"}


def test_cname_target_ip_is_refused() -> None:
    resources = resources_of(ODOO_SH)
    cname = next(r for r in resources if r.inputs.get("type") == "CNAME" and r.inputs["name"].startswith("mail."))
    cname.inputs["content"] = "2001:db8::1"
    (found,) = only(violations(resources), "mail-target-not-ip")
    assert "CNAME target 2001:db8::1 is an IP address" in found[1]


def test_proxied_mail_record_is_refused() -> None:
    resources = resources_of(ONPREMISE)
    record_resource(resources, "mx1.example.net", "A").inputs["proxied"] = True
    (found,) = only(violations(resources), "mail-records-not-proxied")
    assert "mx1.example.net A" in found[1] and "DNS-only" in found[1]


def test_unprotected_mx_is_refused_unless_deletion_allowed() -> None:
    resources = resources_of(ONLINE)
    record_resource(resources, "mail.example.com", "MX").protect = False
    (found,) = only(violations(resources), "mx-protected")
    assert "protect" in found[1] and "allowDelete" in found[1]
    assert violations(resources, {"mx-protected": {"allowDelete": True}}) == []
    use_config_of(ONLINE, **{"mailstack:dns": json.dumps({"zone": "example.com", "allowDelete": True})})
    assert violations(resources) == []


# -- stack policies ---------------------------------------------------------------------


def test_second_spf_at_a_name_is_refused() -> None:
    resources = resources_of(ONLINE)
    second = copy.deepcopy(record_resource(resources, "example.com", "TXT"))
    second.name, second.urn = "extra-spf", second.urn.replace("mail-txt-example.com", "extra-spf")
    second.inputs["content"] = txt.quoted("v=spf1 include:spf.mailjet.com ~all")
    resources.append(second)
    (found,) = only(violations(resources), "spf-single-per-name")
    assert "example.com would have 2 SPF records" in found[1]
    assert found[2] == second.urn


def test_cname_beside_other_records_is_refused() -> None:
    resources = resources_of(ODOO_SH)
    cname = next(r for r in resources if r.inputs.get("type") == "CNAME" and r.inputs["name"].startswith("mail."))
    extra = copy.deepcopy(cname)
    extra.name, extra.urn = "extra-txt", cname.urn + "-extra"
    extra.inputs.update(type="TXT", content=txt.quoted("v=spf1 -all"))
    resources.append(extra)
    (found,) = only(violations(resources), "cname-exclusive")
    assert "has a CNAME beside other records (CNAME, TXT)" in found[1]
    assert found[2] == cname.urn


@pytest.mark.parametrize(
    "stack_file, name, rtype, words",
    [
        (ONLINE, "_dmarc.example.com", "TXT", "example.com has no DMARC record"),
        (ONLINE, "example.com", "TXT", "example.com has no SPF record"),
        (ONLINE, "odoo._domainkey.example.com", "CNAME", "example.com sends mail but has no DKIM"),
        (ONPREMISE, "odoo2026._domainkey.example.net", "TXT", "example.net sends mail but has no DKIM"),
        (LAB, "_dmarc.acme.test", "TXT", "acme.test has no DMARC record"),
    ],
)
def test_domain_without_spf_dmarc_or_dkim_is_refused(stack_file: Path, name: str, rtype: str, words: str) -> None:
    resources = resources_of(stack_file)
    drop_record(resources, name, rtype)
    # Removing a planned record is also a deletion: allow it, to see this policy alone.
    found = violations(resources, {"planned-records-kept": {"allowDelete": True}})
    assert names(found) == {"domains-authenticated"}, found
    assert any(words in message for _, message, _ in found), found


def test_alias_domains_each_need_their_records() -> None:
    resources = resources_of(project.stack_path("multi-company"))
    resources.remove(record_resource(resources, "_dmarc.brand-b.example", "TXT"))
    found = violations(resources, {"planned-records-kept": {"allowDelete": True}})
    assert [m for _, m, _ in found] == ["brand-b.example has no DMARC record at _dmarc.brand-b.example (RFC 7489)"]


def test_deleting_a_planned_record_is_refused_unless_allowed() -> None:
    resources = resources_of(ONPREMISE)
    resources.remove(record_resource(resources, "_mta-sts.example.net", "TXT"))
    (found,) = only(violations(resources), "planned-records-kept")
    assert "_mta-sts.example.net TXT" in found[1] and "record plan" in found[1] and "allowDelete" in found[1]
    assert violations(resources, {"planned-records-kept": {"allowDelete": True}}) == []


def test_deletion_against_previous_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record plan shrinks with the declaration; the previous deployment's records
    (``pulumi stack output records``) show what a change really deletes."""
    resources = resources_of(ONPREMISE)
    old_mx = Record("example.net", "MX", "mx-old.example.net", 3600, 30)
    previous = [r.as_json() for r in plan(stackfile.load(ONPREMISE))] + [old_mx.as_json()]
    (found,) = only(violations(resources, {"planned-records-kept": {"previousRecords": previous}}), "planned-records-kept")
    assert "example.net MX '30 mx-old.example.net'" in found[1] and "previous deployment" in found[1]

    path = tmp_path / "previous.json"
    path.write_text(json.dumps(previous), encoding="utf-8")
    monkeypatch.setenv(PREVIOUS_RECORDS_ENV, str(path))
    assert names(violations(resources)) == {"planned-records-kept"}
    assert violations(resources, {"planned-records-kept": {"allowDelete": True}}) == []
    # An MX whose priority changes is an update of the same host, not a deletion.
    moved = [dict(item, priority=15) if item["content"] == "mx2.example.net" else item for item in previous if item != old_mx.as_json()]
    monkeypatch.setenv(PREVIOUS_RECORDS_ENV, "")
    assert violations(resources, {"planned-records-kept": {"previousRecords": moved}}) == []


# -- RFC 2136 record sets and values unknown during preview ------------------------------


def test_rfc2136_records_are_checked_like_cloudflare_records() -> None:
    resources = resources_of(LAB)
    assert rfc2136_resource(resources).protect
    terms = " ".join(f"include:spf{i}.example.org" for i in range(11))
    set_values(resources, "acme.test", "TXT", [zonefile.rdata_text(Record("acme.test", "TXT", f"v=spf1 {terms} -all", 300))])
    assert names(violations(resources)) == {"spf-valid"}

    set_values(resources, "acme.test", "TXT", ['"v=spf1 -all"', '"v=spf1 include:spf.mailjet.com -all"'])
    found = violations(resources)
    assert names(found) == {"spf-single-per-name"} and "acme.test would have 2 SPF records" in found[0][1]

    set_values(resources, "acme.test", "TXT", ['"v=spf1 ip4:127.0.40.10 -all"'])
    set_values(resources, "acme.test", "MX", ["10 mx1.acme.test.", "not an mx"])
    found = violations(resources)
    assert [(n, m) for n, m, _ in found if n != "planned-records-kept"] == [
        ("record-values-parse", "acme.test MX: 'not an mx' is not valid rdata: expecting an integer")
    ]

    set_values(resources, "acme.test", "MX", ["10 127.0.40.10."])
    assert names(violations(resources)) == {"mail-target-not-ip", "planned-records-kept"}


def test_an_unprotected_rfc2136_resource_with_mx_is_refused() -> None:
    resources = resources_of(LAB)
    rfc2136_resource(resources).protect = False
    (found,) = only(violations(resources), "mx-protected")
    assert "acme.test MX must be registered with protect=True" in found[1]


def test_an_rfc2136_value_unknown_at_preview_still_counts_as_present() -> None:
    resources = resources_of(LAB)
    resource = rfc2136_resource(resources)
    resource.inputs["records"] = [
        {**i, "value": UNKNOWN_STRING_VALUE} if i["name"] == "lab._domainkey.acme.test" else i for i in resource.inputs["records"]
    ]
    resource.inputs = unknown_checking_proxy(resource.inputs)  # type: ignore[assignment]
    stack_found: list[Violation] = []
    for policy in policies.all_policies():
        if isinstance(policy, StackValidationPolicy):
            policy.validate(stack_args(resources), lambda m, u=None, n=policy.name: stack_found.append((n, m, u)))
    assert stack_found == []


def test_unknown_dkim_content_at_preview_still_counts_as_present() -> None:
    """During a first preview the gateway key is unknown: the SDK's proxy raises on
    access (the engine reports that resource policy as not run); the stack policies
    still see the record by name and type."""
    resources = resources_of(ONPREMISE)
    key = record_resource(resources, "odoo2026._domainkey.example.net", "TXT")
    key.inputs["content"] = UNKNOWN_STRING_VALUE
    key.inputs = unknown_checking_proxy(key.inputs)  # type: ignore[assignment]
    stack_found: list[Violation] = []
    for policy in policies.all_policies():
        if isinstance(policy, StackValidationPolicy):
            policy.validate(stack_args(resources), lambda m, u=None, n=policy.name: stack_found.append((n, m, u)))
    assert stack_found == []


# -- the pack's own files ---------------------------------------------------------------


def test_policy_config_example_names_real_policies_and_levels() -> None:
    config = json.loads((POLICY_DIR / "config.example.json").read_text(encoding="utf-8"))
    levels = {level.value for level in EnforcementLevel}
    known = set(policies.names_of_policies()) | {"all"}
    for name, value in config.items():
        assert name in known, f"{name} is not a policy of the pack"
        level = value if isinstance(value, str) else value.get("enforcementLevel")
        assert level in levels, f"{name}: {level!r}"
        if isinstance(value, dict):
            schema = policies.policy(name).config_schema
            extra = set(value) - {"enforcementLevel"}
            assert schema is not None and extra <= set(schema.properties), f"{name}: {extra}"


def test_allow_delete_unprotects_mx_and_passes_the_gate() -> None:
    """Step one of deleting an MX: set allowDelete; the program registers the MX
    unprotected (so the engine lets the next change delete it) and the pack accepts."""
    dns_config = json.dumps({"provider": "cloudflare", "zone": "example.com", "allowDelete": True})
    resources = run_program(ONLINE, config={"mailstack:dns": dns_config}).resources
    mx = record_resource(resources, "mail.example.com", "MX")
    assert mx.protect is False
    assert violations(resources) == []
    resources.remove(mx)
    assert violations(resources) == []  # step two: the MX is gone, and that is allowed


def test_tlsa_records_are_judged_by_the_dane_rule(tmp_path: Path) -> None:
    text = ONPREMISE.read_text().replace(
        "      key: /etc/ssl/mailstack/privkey.pem\n",
        "      key: /etc/ssl/mailstack/privkey.pem\n      dane: {digest: " + "ab" * 32 + ", next: " + "cd" * 32 + "}\n", 1)
    stack_file = tmp_path / "Pulumi.dane.yaml"
    stack_file.write_text(text)
    resources = resources_of(stack_file)
    tlsa = [r for r in resources if r.inputs.get("type") == "TLSA"]
    assert len(tlsa) == 4  # two gateways, current and next key
    assert "tlsa-valid" not in names(violations(resources))
    tlsa[0].inputs["data"]["usage"] = 1  # PKIX-EE: unusable for SMTP
    found = [m for n, m, _ in violations(resources) if n == "tlsa-valid"]
    assert len(found) == 1 and "usage 1 is unusable for SMTP (RFC 7672 §3.1.3)" in found[0]
