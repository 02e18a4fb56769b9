"""Issue 15 parts 4 and 5 against the check suite's real BIND (``tests.standards_zones``):
DMARCbis (RFC 9989) tree walk, psd=, removed/unknown tags and test mode; SPF macros
(RFC 7208 §7) validated and counted, with pyspf's own macro expansion as the second
opinion; spf.loop undecided when an include cannot be fetched; DNS blocklists (RFC 5782)
listed, not listed, refused (Spamhaus' 127.255.255.x) and a list that lists everything.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.checks.dns import loop
from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.groups import dmarc as dmarc_checks
from mailstack.checks.probes.spf_pyspf import check_host
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from tests import standards_zones as sz
from tests.checks_fixtures import context, dns_lab, of, run  # noqa: F401

PASS, WARN, FAIL, ERROR, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP


def one(findings: list[Finding], id: str) -> Finding:
    found = of(findings, id)
    assert len(found) == 1, (id, [f.summary for f in found])
    return found[0]


def dmarc_of(lab: Any, domain: str) -> list[Finding]:
    return run(context(lab, domain=domain), "dmarc")


def test_subdomain_without_record_takes_its_organizational_domains_policy(dns_lab) -> None:
    findings = dmarc_of(dns_lab, "shop.brand.psd.dmarcbis")
    present = one(findings, "dmarc.present")
    assert present.status is PASS and "_dmarc.brand.psd.dmarcbis applies" in present.summary
    policy = one(findings, "dmarc.policy")  # sp=none of brand.psd applies to its subdomain
    assert policy.status is WARN and "p=none" in policy.summary


def test_psd_policy_applies_below_a_public_suffix_domain(dns_lab) -> None:
    """other.psd publishes nothing; the walk reaches psd.dmarcbis (psd=y), whose sp= applies."""
    findings = dmarc_of(dns_lab, "other.psd.dmarcbis")
    assert "_dmarc.psd.dmarcbis applies" in one(findings, "dmarc.present").summary
    policy = one(findings, "dmarc.policy")
    assert policy.status is PASS and policy.summary.endswith("p=quarantine")


def test_organizational_domain_by_the_tree_walk_live(dns_lab) -> None:
    ctx = context(dns_lab, domain="dmarcbis")

    def org(name: str) -> str:
        return loop.run(dmarc_checks.discovery(ctx, name)).organizational_domain

    assert org("shop.brand.psd.dmarcbis") == "brand.psd.dmarcbis"  # shortest record below the PSD
    assert org("a.b.other.psd.dmarcbis") == "other.psd.dmarcbis"  # one label below the psd=y name
    assert org("news.org.psd.dmarcbis") == "org.psd.dmarcbis"  # psd=n stops the walk
    assert org("psd.dmarcbis") == "psd.dmarcbis"
    found = loop.run(dmarc_checks.discovery(ctx, sz.DEEP))
    # the records 9 and 8 labels deep are never asked (the walk shortens to 7 labels): deep.dmarcbis applies
    assert (found.policy_domain, found.record) == ("deep.dmarcbis", "v=DMARC1; p=none; rua=mailto:d@deep.dmarcbis")


@pytest.mark.parametrize("domain", ["shop.brand.psd.dmarcbis", "other.psd.dmarcbis", "news.org.psd.dmarcbis", sz.DEEP, "removed.dmarcbis",
                                    "a.b.other.psd.dmarcbis"])
def test_policy_discovery_agrees_with_checkdmarc(dns_lab, domain: str) -> None:
    """checkdmarc (6.0, an RFC 9989 tree walk nobody here wrote) finds the same record
    at the same place through the same BIND."""
    import checkdmarc.dmarc as cdmarc
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_lab.bind.address]
    resolver.port = dns_lab.port
    resolver.lifetime = 3
    theirs = cdmarc.query_dmarc_record(domain, resolver=resolver)
    ours = loop.run(dmarc_checks.discovery(context(dns_lab, domain=domain), domain))
    assert (ours.policy_domain, ours.record) == (theirs["location"], theirs["record"])


def test_removed_tags_warn_with_the_fix_and_pct_is_not_a_policy_warning(dns_lab) -> None:
    findings = dmarc_of(dns_lab, "removed.dmarcbis")
    removed = one(findings, "dmarc.removed-tags")
    assert removed.status is WARN and "pct=, rf=, ri= removed by RFC 9989" in removed.summary
    assert removed.fix == '_dmarc.removed.dmarcbis. IN TXT "v=DMARC1; p=reject"'
    assert one(findings, "dmarc.policy").status is PASS  # no warning on pct (RFC 7489's pct<100 warned)
    assert one(findings, "dmarc.syntax").status is PASS
    clean = dmarc_of(dns_lab, "enforced.dmarcbis")
    assert one(clean, "dmarc.removed-tags").status is PASS and one(clean, "dmarc.policy").status is PASS


def test_unknown_tag_is_ignored_with_a_note(dns_lab) -> None:
    syntax = one(dmarc_of(dns_lab, "unknown.dmarcbis"), "dmarc.syntax")
    assert syntax.status is PASS and "1 unknown tag(s) ignored" in syntax.summary and "unknown tag foo" in syntax.detail


def test_test_mode_is_understood(dns_lab) -> None:
    policy = one(dmarc_of(dns_lab, "testmode.dmarcbis"), "dmarc.policy")
    assert policy.status is WARN and "test mode (t=y)" in policy.summary and "testMode" in policy.fix


@pytest.mark.parametrize(("domain", "status", "words"), [
    ("npreject.dmarcnp", PASS, "gives it p=reject by np="),
    ("spnone.dmarcnp", WARN, "gives it p=none by sp= (no np=), weaker than spnone.dmarcnp's p=reject"),
    ("ponly.dmarcnp", PASS, "gives it p=quarantine by p= (no sp=, no np=)"),
    ("enforced.dmarcbis", PASS, "gives it p=reject by np="),
])
def test_made_up_subdomains_get_np_then_sp_then_p_on_real_bind(dns_lab, domain: str, status: Status, words: str) -> None:
    """dmarc.nonexistent asks BIND for a random name below the domain (NXDOMAIN) and
    takes the policy the tree walk finds for it, with RFC 9989's np -> sp -> p."""
    found = one(dmarc_of(dns_lab, domain), "dmarc.nonexistent")
    assert found.status is status and "does not exist (NXDOMAIN)" in found.summary and words in found.summary, found.summary
    if status is WARN:
        assert found.fix == f'_dmarc.{domain}. IN TXT "v=DMARC1; p=reject; sp=none; np=reject" (mailstack:dmarc.nonexistentPolicy: reject)'
        assert "anyone can send as any-name." in found.summary and "deliver it unchecked" in found.summary
        assert found.detail.startswith("asked ms-nx-") and "<made-up>." in found.summary  # the summary is the same every run


def test_a_wildcard_makes_made_up_subdomains_exist_and_sp_applies(dns_lab) -> None:
    found = one(dmarc_of(dns_lab, "wild.dmarcnp"), "dmarc.nonexistent")
    assert found.status is WARN and "exists (a wildcard answers every made-up subdomain of wild.dmarcnp)" in found.summary, found.summary
    assert "receivers apply sp=, not np=" in found.summary and "p=none by np=" not in found.summary
    assert found.fix == '_dmarc.wild.dmarcnp. IN TXT "v=DMARC1; p=reject; sp=reject; np=reject"'


def test_a_declared_np_is_planned_and_a_published_record_without_it_fails(dns_lab) -> None:
    """mailstack:dmarc.nonexistentPolicy goes into the planned record; the published one
    at spnone.dmarcnp lacks it: dmarc.nonexistent fails with the planned line as fix."""
    from mailstack import plan

    stack = from_config({
        "domain": "spnone.dmarcnp", "odoo": {"hosting": "onpremise", "url": "http://127.0.151.40:8069", "database": "db"},
        "outbound": ["gateway"], "inbound": {"mode": "none"}, "dns": {"zone": "spnone.dmarcnp"},
        "gateways": [{"hostname": "mx.spnone.dmarcnp", "ipv4": "127.0.151.41"}],
        "gateway": {"odooAddresses": ["127.0.151.40/32"], "mailgate": {"passwordFile": "/nonexistent/odoo-password"}},
        "dmarc": {"policy": "reject", "subdomainPolicy": "none", "nonexistentPolicy": "reject"},
    })
    planned = [r for r in plan.build(stack).records if r.purpose == "dmarc"]
    assert [r.content for r in planned] == ["v=DMARC1; p=reject; sp=none; np=reject"]
    found = one(run(context(dns_lab, stack=stack), "dmarc"), "dmarc.nonexistent")
    assert found.status is FAIL and "np=(none), declared np=reject (dmarc.nonexistentPolicy)" in found.summary, found.summary
    assert found.fix == '_dmarc.spnone.dmarcnp. 3600 IN TXT "v=DMARC1; p=reject; sp=none; np=reject"', found.fix


@pytest.mark.parametrize("domain", ["npreject.dmarcnp", "spnone.dmarcnp", "ponly.dmarcnp", "enforced.dmarcbis"])
def test_the_policy_of_a_made_up_subdomain_agrees_with_checkdmarc(dns_lab, domain: str) -> None:
    """checkdmarc (6.0) confirms the made-up name does not exist (it refuses to look up
    a policy for it), finds at the domain the record our walk finds for the made-up
    name, and reads from it the same np (applying the np -> sp -> p fallback itself)."""
    import checkdmarc.dmarc as cdmarc
    import dns.resolver

    from mailstack.rules import dmarc

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_lab.bind.address]
    resolver.port = dns_lab.port
    resolver.lifetime = 3
    made_up = f"{dmarc_checks.random_label()}.{domain}"
    with pytest.raises(cdmarc.DMARCRecordNotFound, match="does not exist"):
        cdmarc.query_dmarc_record(made_up, resolver=resolver)
    theirs = cdmarc.query_dmarc_record(domain, resolver=resolver)
    ours = loop.run(dmarc_checks.discovery(context(dns_lab, domain=domain), made_up))
    assert (ours.policy_domain, ours.record) == (theirs["location"], theirs["record"])
    assert ours.record is not None and ours.inherited
    np = cdmarc.parse_dmarc_record(theirs["record"], theirs["location"], resolver=resolver)["tags"]["np"]["value"]
    assert dmarc.applied_policy(dmarc.parse(ours.record), inherited=True, nonexistent=True) == np


def spf_of(lab: Any, domain: str) -> list[Finding]:
    return run(context(lab, domain=domain), "spf")


def test_spf_macros_validated_and_counted_once_each(dns_lab) -> None:
    findings = spf_of(dns_lab, "spf-macro.dmarcbis")
    assert one(findings, "spf.syntax").status is PASS
    lookups = one(findings, "spf.lookups")
    assert lookups.status is PASS and "2 of 10 DNS lookups (2 term(s) with macros counted once each)" in lookups.summary
    assert "exists:%{i}._spf.spf-macro.dmarcbis" in lookups.detail
    # pyspf (an implementation nobody here wrote) expands the same macros and passes
    # 127.0.151.30 through exists:%{i}._spf...: the form we accept is one it evaluates.
    result, _ = check_host(dns_lab.run_resolver(), "127.0.151.30", "spf-macro.dmarcbis")
    assert result == "pass"


def test_invalid_spf_macro_fails_syntax_and_pyspf_agrees(dns_lab) -> None:
    syntax = one(spf_of(dns_lab, "spf-badmacro.dmarcbis"), "spf.syntax")
    assert syntax.status is FAIL and "%{x} is not a macro letter" in syntax.summary
    result, _ = check_host(dns_lab.run_resolver(), "127.0.151.30", "spf-badmacro.dmarcbis")
    assert result == "permerror"


def test_spf_loop_is_an_error_when_an_include_cannot_be_fetched(dns_lab) -> None:
    findings = spf_of(dns_lab, "spf-unfetched.dmarcbis")
    loop_finding = one(findings, "spf.loop")
    assert loop_finding.status is ERROR and "could not be fetched" in loop_finding.summary
    assert one(spf_of(dns_lab, "spf-macro.dmarcbis"), "spf.loop").status is PASS
    assert one(spf_of(dns_lab, "loop.broken.test"), "spf.loop").status is FAIL  # a real loop still fails


def reputation_stack(ipv4: str, ipv6: str | None = None, lists: list[str] | None = None) -> MailDomain:
    gateway: dict[str, Any] = {"hostname": "mx.rep.dmarcbis", "ipv4": ipv4, **({"ipv6": ipv6} if ipv6 else {})}
    return from_config({
        "domain": "rep.dmarcbis",
        "odoo": {"hosting": "onpremise", "url": "http://127.0.151.40:8069", "database": "db"},
        "outbound": ["gateway"], "inbound": {"mode": "gateway"}, "gateways": [gateway],
        "gateway": {"odooAddresses": ["127.0.151.40/32"], "mailgate": {"passwordFile": "/nonexistent/odoo-password"}},
        "dns": {"zone": "rep.dmarcbis"}, "checks": {"blocklists": lists if lists is not None else [sz.BLOCKLIST]},
    })


def reputation(lab: Any, stack: MailDomain) -> list[Finding]:
    return of(run(context(lab, stack=stack), "reputation"), "reputation.dnsbl")


def test_listed_gateway_fails_with_the_lists_reason_ipv4_and_ipv6(dns_lab) -> None:
    findings = reputation(dns_lab, reputation_stack(sz.LISTED, sz.LISTED6))
    assert [f.status for f in findings] == [FAIL, FAIL]
    v4, v6 = findings
    assert "127.0.151.10 is listed on bl.test: listed: lab spam source" in v4.summary and v4.found == "127.0.0.2, 127.0.0.4"
    assert "2001:db8:151::10 is listed on bl.test: listed: lab IPv6 spam source" in v6.summary
    assert "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.5.1.0.8.b.d.0.1.0.0.2.bl.test" in v6.detail  # nibbles


def test_clean_gateway_passes(dns_lab) -> None:
    findings = reputation(dns_lab, reputation_stack(sz.CLEAN))
    assert [(f.status, f.summary) for f in findings] == [(PASS, "127.0.151.11 is not listed on bl.test")]


def test_spamhaus_refusal_answers_are_errors_not_listings(dns_lab) -> None:
    for address, words in ((sz.REFUSED_PUBLIC, "public or unattributable resolver"), (sz.REFUSED_QUOTA, "too many queries")):
        (finding,) = reputation(dns_lab, reputation_stack(address))
        assert finding.status is ERROR and "not checked" in finding.summary and words in finding.summary, finding.summary
        assert "--nameserver" in finding.fix


def test_a_list_that_lists_everything_or_cannot_be_asked_is_an_error(dns_lab) -> None:
    (dead,) = reputation(dns_lab, reputation_stack(sz.CLEAN, lists=[sz.DEAD_BLOCKLIST]))
    assert dead.status is ERROR and "lists 127.0.0.1" in dead.summary
    (unserved,) = reputation(dns_lab, reputation_stack(sz.CLEAN, lists=["bl.not-served.invalid"]))
    assert unserved.status is ERROR and "not checked" in unserved.summary
    assert [f.status for f in reputation(dns_lab, reputation_stack(sz.CLEAN, lists=[]))] == [SKIP]


def test_domain_mode_looks_up_the_mx_addresses_on_the_blocklist_option(dns_lab, capsys: pytest.CaptureFixture[str]) -> None:
    """``mailstack check --domain D --blocklist ZONE``: the MX hosts' addresses, exit 1 when listed."""
    import json

    from mailstack.cli import main as cli

    args = ["check", "--nameserver", dns_lab.nameserver, "--timeout", "1", "--only", "reputation", "--format", "json", "--domain", "rep-mx.dmarcbis"]
    assert cli.main([*args, "--blocklist", sz.BLOCKLIST]) == 1
    (finding,) = json.loads(capsys.readouterr().out)["checks"]
    assert (finding["id"], finding["status"]) == ("reputation.dnsbl", "fail") and sz.LISTED in finding["summary"]
    assert cli.main([*args, "--blocklist", "not a zone"]) == 2
    assert "--blocklist: " in capsys.readouterr().err
