"""The record plan (mailstack.plan) with its helpers: names, sender profiles, MTA-STS,
zone-file rendering. Declarations are built through ``from_config`` as users write them."""

from __future__ import annotations

from typing import Any

import dns.rdata
import pytest

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.core import names, zonefile
from mailstack.core.errors import ConfigErrors, PlanError
from mailstack.core.record import Record
from mailstack.plan.conflicts import conflicts
from mailstack.plan.records import order_key
from mailstack.rules import mta_sts, senders
from mailstack.rules.mx import NULL_MX
from tests import project
from tests.project import planned

ONLINE: dict[str, Any] = {
    "domain": "example.com",
    "odoo": {"hosting": "online", "database": "examplecorp"},
    "outbound": ["odoo"],
    "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
}


def records_of(overrides: dict[str, Any] | None = None, key: str | None = None) -> list[Record]:
    return planned(from_config({**ONLINE, **(overrides or {})}), key)


def triples(records: list[Record]) -> set[tuple[str, str, str, int | None]]:
    return {(r.name, r.type, r.content, r.priority) for r in records}


# --- names -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("Example.COM.", "example.com"), (" mx1.example.net ", "mx1.example.net"), ("xn--bcher-kva.example", "xn--bcher-kva.example")])
def test_hostname_normalizes(text: str, expected: str) -> None:
    assert names.hostname(text) == expected


@pytest.mark.parametrize("text", ["com", "1.2.3.4", "-a.example", "a-.example", "a_b.example", "exa mple.com", "example.123", "a..example", "", 5, None, "a" * 64 + ".example", ".".join(["abcdefghij"] * 26)])
def test_hostname_rejects(text: object) -> None:
    with pytest.raises(names.InvalidName):
        names.hostname(text)


def test_label() -> None:
    assert names.label("Mail") == "mail"
    assert names.label("_dmarc", allow_underscore=True) == "_dmarc"
    for bad in ("a.b", "_dmarc", "", "-x", "a b"):
        with pytest.raises(names.InvalidName):
            names.label(bad)


def test_addresses() -> None:
    assert names.ipv4(" 192.0.2.1 ") == "192.0.2.1"
    assert names.ipv6("2001:DB8:0:0::1") == "2001:db8::1"
    assert names.is_ip("[2001:db8::1]") and not names.is_ip("mx.example.com")
    for bad, check in (("300.1.1.1", names.ipv4), ("2001:db8::1", names.ipv4), ("192.0.2.1", names.ipv6), ("zz", names.ipv6)):
        with pytest.raises(names.InvalidName):
            check(bad)


def test_within_and_relative_to() -> None:
    assert names.within("a.example.com", "example.com") and names.within("example.com", "example.com")
    assert not names.within("badexample.com", "example.com")
    assert names.relative_to("example.com", "example.com") == "@"
    assert names.relative_to("_dmarc.shop.example.com", "example.com") == "_dmarc.shop"


# --- Odoo's servers ----------------------------------------------------------------------


def test_online_follows_odoo_documentation() -> None:
    found = triples(records_of())
    assert found == {
        ("example.com", "TXT", "v=spf1 include:_spf.odoo.com ~all", None),
        ("odoo._domainkey.example.com", "CNAME", "odoo._domainkey.odoo.com", None),
        ("_dmarc.example.com", "TXT", "v=DMARC1; p=none", None),
        ("mail.example.com", "MX", "examplecorp.odoo.com", 10),
        ("mail.example.com", "TXT", "v=spf1 include:_spf.odoo.com ~all", None),
        ("odoo._domainkey.mail.example.com", "CNAME", "odoo._domainkey.odoo.com", None),
    }


def test_odoo_mx_cname_has_nothing_else_at_that_name() -> None:
    records = records_of({"inbound": {"mode": "odoo-mx", "subdomain": "inbox", "record": "cname"}})
    at_inbound = [r for r in records if r.name == "inbox.example.com"]
    assert [(r.type, r.content) for r in at_inbound] == [("CNAME", "examplecorp.odoo.com")]


def test_odoo_host_override() -> None:
    records = records_of({"odoo": {"hosting": "sh", "database": "shop", "host": "shop-main-123.dev.odoo.com."}})
    assert ("mail.example.com", "MX", "shop-main-123.dev.odoo.com", 10) in triples(records)


def test_plan_is_sorted_and_stable() -> None:
    first = records_of({"outbound": ["odoo", {"spf": "ip4:192.0.2.1"}]})
    assert first == sorted(first, key=order_key) == records_of({"outbound": ["odoo", {"spf": "ip4:192.0.2.1"}]})
    assert all(r.ttl == 3600 for r in first)


# --- senders -----------------------------------------------------------------------------


def test_senders_merge_into_one_spf_record_per_name() -> None:
    records = records_of({"outbound": ["odoo", "mailjet", {"spf": "ip4:192.0.2.1 include:_spf.odoo.com"}], "spf": {"all": "-all"}})
    spf_at_root = [r for r in records if r.name == "example.com" and r.type == "TXT"]
    assert [r.content for r in spf_at_root] == ["v=spf1 include:_spf.odoo.com include:spf.mailjet.com ip4:192.0.2.1 -all"]


def test_sender_profiles() -> None:
    assert senders.SPF_INCLUDES[senders.SenderKind.GOOGLE] == "include:_spf.google.com"
    assert senders.SPF_INCLUDES[senders.SenderKind.MICROSOFT] == "include:spf.protection.outlook.com"
    assert senders.SPF_INCLUDES[senders.SenderKind.MAILJET] == "include:spf.mailjet.com"
    assert senders.microsoft_mx("contoso.example")[0].host == "contoso-example.mail.protection.outlook.com"
    assert senders.GOOGLE_MX[0].host == "smtp.google.com" and senders.GOOGLE_MX[0].priority == 1


def test_microsoft_dkim_cnames_per_domain() -> None:
    records = records_of({"outbound": [{"type": "microsoft", "tenant": "contoso"}], "aliasDomains": ["contoso.example"]})
    found = triples(records)
    for domain in ("example.com", "contoso.example"):
        dashed = domain.replace(".", "-")
        for sel in ("selector1", "selector2"):
            assert (f"{sel}._domainkey.{domain}", "CNAME", f"{sel}-{dashed}._domainkey.contoso.onmicrosoft.com", None) in found


def test_gateway_dkim_placeholder_and_key(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    declaration = {
        "domain": "example.net",
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "s2026"},
    }
    stack = from_config(declaration)
    pending = [r for r in planned(stack) if r.name == "s2026._domainkey.example.net"]
    assert len(pending) == 1 and pending[0].needs_gateway_key and pending[0].content.endswith("p=<generated-by-pulumi>")
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    known = [r for r in planned(stack, pem) if r.name == "s2026._domainkey.example.net"]
    assert not known[0].needs_gateway_key and known[0].content.startswith("v=DKIM1; k=rsa; p=MIIB")


def test_gateway_addresses_only_inside_managed_zones() -> None:
    stack = from_config(
        {
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway"},
            "gateways": [
                {"hostname": "mx1.example.net", "ipv4": "192.0.2.10", "ipv6": "2001:db8::10"},
                {"hostname": "relay.provider.example", "ipv4": "198.51.100.1"},
            ],
        }
    )
    found = triples(planned(stack))
    assert ("mx1.example.net", "A", "192.0.2.10", None) in found
    assert ("mx1.example.net", "AAAA", "2001:db8::10", None) in found
    assert not any(name == "relay.provider.example" for name, *_ in found)
    assert ("example.net", "MX", "mx1.example.net", 10) in found
    assert ("example.net", "MX", "relay.provider.example", 20) in found, "default priorities 10, 20, ..."
    assert ("example.net", "TXT", "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ip4:198.51.100.1 ~all", None) in found


# --- inbound modes -----------------------------------------------------------------------


def test_mx_in_priority_order() -> None:
    stack = from_config(
        {
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "production"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway"},
            "gateways": [
                {"hostname": "a-backup.example.net", "ipv4": "192.0.2.20", "priority": 20},
                {"hostname": "z-primary.example.net", "ipv4": "192.0.2.10", "priority": 10},
                {"hostname": "b-primary.example.net", "ipv4": "192.0.2.11", "priority": 10},
            ],
        }
    )
    mx = [(r.priority, r.content) for r in planned(stack) if r.type == "MX"]
    assert mx == [(10, "b-primary.example.net"), (10, "z-primary.example.net"), (20, "a-backup.example.net")]


def test_inbound_none_is_null_mx() -> None:
    records = records_of({"inbound": {"mode": "none"}})
    assert ("example.com", "MX", NULL_MX, 0) in triples(records)
    assert zonefile.line(next(r for r in records if r.type == "MX")) == "example.com. 3600 IN MX 0 ."


def test_inbound_forward_mx_hosts() -> None:
    records = records_of({"inbound": {"mode": "forward", "mx": "google"}})
    assert ("example.com", "MX", "smtp.google.com", 1) in triples(records)
    records = records_of({"inbound": {"mode": "imap", "mx": [{"host": "mx.mailbox.example", "priority": 5}]}})
    assert [r for r in records if r.type == "MX"] == [Record("example.com", "MX", "mx.mailbox.example", 3600, 5)]


# --- policy records ---------------------------------------------------------------------


def test_mta_sts_and_tls_rpt() -> None:
    records = records_of(
        {
            "inbound": {"mode": "forward", "mx": "google"},
            "mtaSts": {"mode": "enforce", "maxAge": 86400},
            "tlsRpt": {"rua": ["mailto:tls@example.com"]},
        }
    )
    text = mta_sts.policy_text("enforce", ["smtp.google.com"], 86400)
    assert text == "version: STSv1\r\nmode: enforce\r\nmx: smtp.google.com\r\nmax_age: 86400\r\n"
    found = triples(records)
    assert ("_mta-sts.example.com", "TXT", f"v=STSv1; id={mta_sts.policy_id(text)}", None) in found
    assert ("_smtp._tls.example.com", "TXT", "v=TLSRPTv1; rua=mailto:tls@example.com", None) in found


def test_mta_sts_id_tracks_policy() -> None:
    a = mta_sts.policy_id(mta_sts.policy_text("testing", ["mx1.example.net"], 604800))
    b = mta_sts.policy_id(mta_sts.policy_text("enforce", ["mx1.example.net"], 604800))
    assert a != b and len(a) <= 32 and a.isalnum()
    assert mta_sts.policy_text("testing", ["b.example", "a.example", "a.example"], 1).count("mx: ") == 2


def test_dmarc_report_authorization_for_foreign_domains() -> None:
    records = records_of({"aliasDomains": ["brand.example"], "dmarc": {"policy": "none", "rua": ["mailto:d@example.com"]}})
    found = triples(records)
    assert ("brand.example._report._dmarc.example.com", "TXT", "v=DMARC1", None) in found
    assert not any(n.startswith("example.com._report") for n, *_ in found)


def test_external_report_domain_gets_no_record() -> None:
    records = records_of({"dmarc": {"policy": "none", "rua": ["mailto:d@reports.vendor.example"]}})
    assert not any("_report._dmarc" in r.name for r in records)


def test_managed_zones() -> None:
    stack = from_config({**ONLINE, "aliasDomains": ["other.example", "shop.example.com"], "dns": {"aliasZones": {"other.example": "other.example"}}})
    assert planning.build(stack).managed_zones == ("example.com", "other.example")
    assert stack.dns.zone_of("_dmarc.shop.example.com") == "example.com"
    assert stack.dns.zone_of("odoo._domainkey.other.example") == "other.example"


# --- conflicts --------------------------------------------------------------------------


def test_conflicts_two_spf_records() -> None:
    records = [Record("example.com", "TXT", "v=spf1 -all", 300), Record("example.com", "TXT", "v=spf1 mx -all", 300)]
    problems = conflicts(records)
    assert "example.com would have 2 SPF records; RFC 7208 §3.2 allows one" in problems


def test_conflicts_same_record_twice_is_one() -> None:
    record = Record("example.com", "TXT", "v=spf1 -all", 300)
    assert conflicts([record, record]) == []


def test_conflicts_cname_beside_other_record() -> None:
    records = [Record("mail.example.com", "CNAME", "db.odoo.com", 300), Record("mail.example.com", "TXT", "v=spf1 -all", 300)]
    assert conflicts(records) == [
        "mail.example.com has a CNAME beside other records (CNAME, TXT); RFC 1034 §3.6.2 forbids it"
    ]


def test_conflicts_mx_targets() -> None:
    assert conflicts([Record("example.com", "MX", "192.0.2.1", 300, 10)]) == [
        "example.com: MX target 192.0.2.1 is an IP address (RFC 7505, RFC 2181 §10.3)"
    ]
    records = [Record("example.com", "MX", "mail.example.com", 300, 10), Record("mail.example.com", "CNAME", "db.odoo.com", 300)]
    assert conflicts(records) == ["example.com: MX target mail.example.com is a CNAME (RFC 2181 §10.3)"]
    assert conflicts([Record("x.example.com", "CNAME", "192.0.2.1", 300)]) == ["x.example.com: CNAME target 192.0.2.1 is an IP address"]


def test_conflicts_spf_budget() -> None:
    value = "v=spf1 " + " ".join(f"include:s{i}.example" for i in range(11)) + " -all"
    assert conflicts([Record("example.com", "TXT", value, 300)]) == [
        "example.com: SPF needs 11 DNS lookups at its top level, over the limit of 10 (RFC 7208 §4.6.4)"
    ]


def test_plan_refuses_alias_domain_at_the_odoo_cname() -> None:
    """An alias domain that is also the CNAME'd inbound name would need SPF beside it."""
    stack = from_config({**ONLINE, "aliasDomains": ["mail.example.com"], "inbound": {"mode": "odoo-mx", "subdomain": "mail", "record": "cname"}})
    with pytest.raises(PlanError) as excinfo:
        planning.build(stack)
    assert [str(e) for e in excinfo.value.errors] == [
        "mailstack:inbound: mail.example.com has a CNAME beside other records (CNAME, TXT); RFC 1034 §3.6.2 forbids it"
    ]
    assert isinstance(excinfo.value, ConfigErrors)  # the CLI reports it like any configuration error
    assert [p.kind for p in excinfo.value.problems] == ["cname-exclusive"]


def test_record_key_unique_for_mx_sharing_a_priority() -> None:
    a = Record("example.com", "MX", "mx1.example.com", 300, 10)
    b = Record("example.com", "MX", "mx2.example.com", 300, 10)
    assert a.key != b.key
    assert Record("example.com", "TXT", "v=spf1 -all", 300).key == "txt-example.com"


def test_record_json_shape() -> None:
    assert Record("example.com", "MX", "mx.example.com", 300, 10).as_json() == {
        "name": "example.com",
        "type": "MX",
        "content": "mx.example.com",
        "ttl": 300,
        "priority": 10,
    }


# --- zone-file form ---------------------------------------------------------------------


def test_zonefile_lines_parse_with_dnspython() -> None:
    for record in records_of({"outbound": ["odoo", {"type": "mailjet", "dkimKey": _mailjet_key()}]}):
        name, ttl, klass, rtype, rdata = zonefile.line(record).split(" ", 4)
        assert name == record.name + "." and int(ttl) == record.ttl and klass == "IN" and rtype == record.type
        parsed = dns.rdata.from_text("IN", rtype, rdata)
        if rtype == "TXT":
            assert b"".join(parsed.strings).decode() == record.content  # type: ignore[attr-defined]
            assert all(len(s) <= 255 for s in parsed.strings)  # type: ignore[attr-defined]


def _mailjet_key() -> str:
    from mailstack.config import stackfile

    sender = stackfile.load(project.stack_path("odoo-sh")).sender(senders.SenderKind.MAILJET)
    assert sender is not None and sender.dkim_key
    return sender.dkim_key


def test_dmarc_at_the_alias_subdomain_only_below_a_non_organizational_domain() -> None:
    """RFC 7489 §6.6.3: a receiver falls back to the Organizational Domain's policy, so
    Odoo's alias domain mail.<domain> is covered by _dmarc.<domain> only when <domain>
    is itself the Organizational Domain."""
    org = {r.name for r in records_of() if r.purpose == "dmarc"}
    assert org == {"_dmarc.example.com"}
    below = {r.name for r in records_of({"domain": "shop.example.org", "dns": {"zone": "example.org"}}) if r.purpose == "dmarc"}
    assert below == {"_dmarc.shop.example.org", "_dmarc.mail.shop.example.org"}


def test_a_gateway_receiving_on_a_subdomain_signs_lists_and_publishes_spf_for_it() -> None:
    """Odoo's alias domain is the name it receives on (mail.<domain>), and Odoo 17 sends
    as notifications@/bounce@ that alias domain: the plan must treat it as a sending name
    (SPF, DKIM), so the gateways sign it and from_filter lists it."""
    from mailstack.gateway import render

    stack = from_config({
        "domain": "example.net",
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "subdomain": "mail", "aliases": ["sales"]},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "gw"},
    })
    built = planning.build(stack, None)
    assert built.sending_names["example.net"] == ("example.net", "mail.example.net")
    found = triples(list(built.records))
    assert ("mail.example.net", "TXT", "v=spf1 ip4:192.0.2.10 ~all", None) in found
    assert ("mail.example.net", "MX", "mx1.example.net", 10) in found
    assert "gw._domainkey.mail.example.net" in {r.name for r in built.records if r.purpose == "dkim"}
    files = render.render(built)
    assert "*@mail.example.net\tgw._domainkey.mail.example.net" in files["opendkim/SigningTable"].text
    assert "from_filter = example.net,mail.example.net\n" in files["odoo/odoo.conf"].text
