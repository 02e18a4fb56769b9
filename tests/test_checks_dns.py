"""DNS checks against a real BIND serving broken domains: every check id fails (or
warns) on its defect and passes on a correct domain; DNS failures are ``error``.

Domains are in ``tests.check_zones`` (``broken.test``); declarations are built with
``modules.config.from_config`` so the checks get expectations as from a stack file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailstack.checks.engine.finding import Status
from mailstack.core.model import Dkim
from mailstack.core.record import Record
from mailstack.rules import dkim as dkim_rules
from tests import check_zones as z
from tests.checks_fixtures import context, dns_lab, of, run, stack_from, statuses  # noqa: F401

PASS, WARN, FAIL, ERROR, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP


def declaration(domain: str, **overrides: Any) -> dict[str, Any]:
    """An on-premise gateway declaration for a domain of broken.test."""
    raw: dict[str, Any] = {
        "domain": domain,
        "odoo": {"hosting": "onpremise", "url": f"https://odoo.{domain}", "database": "db"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": f"gw.{domain}", "ipv4": "127.0.10.77"}],
        "dns": {"zone": "broken.test"},
    }
    raw.update(overrides)
    return raw


def domain_run(lab, domain: str, *groups: str, timeout: float = 2.0):  # type: ignore[no-untyped-def]
    return run(context(lab, domain=domain, timeout=timeout), *groups)


# -- SPF ------------------------------------------------------------------------------


def test_spf_present_single_syntax(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "nullmx.broken.test", "spf"), "spf.present") == {FAIL}
    two = domain_run(dns_lab, "two-spf.broken.test", "spf")
    assert statuses(two, "spf.single") == {FAIL}
    assert statuses(two, "spf.present") == {PASS}
    bad = domain_run(dns_lab, "spf-syntax.broken.test", "spf")
    assert statuses(bad, "spf.syntax") == {FAIL}
    assert "300.1.1.1" in of(bad, "spf.syntax")[0].summary
    good = domain_run(dns_lab, "ten.broken.test", "spf")
    for id in ("spf.present", "spf.single", "spf.syntax", "spf.all", "spf.loop", "spf.size", "spf.void-lookups"):
        assert statuses(good, id) == {PASS}, id


def test_spf_lookups_counted_recursively_with_per_term_counts(dns_lab) -> None:
    over = of(domain_run(dns_lab, "lookups.broken.test", "spf"), "spf.lookups")
    assert [f.status for f in over] == [FAIL]
    assert over[0].found == "11 lookups (a=1, mx=1, include:n1.lookups.broken.test=9)"
    limit = of(domain_run(dns_lab, "ten.broken.test", "spf"), "spf.lookups")
    assert [f.status for f in limit] == [PASS]
    assert limit[0].found.startswith("10 lookups")


def test_spf_mx_term_naming_more_than_ten_hosts(dns_lab) -> None:
    found = of(domain_run(dns_lab, "mx-limit.broken.test", "spf"), "spf.lookups")
    assert [f.status for f in found] == [FAIL]
    assert "mx:mxmany.broken.test names 11 MX records" in found[0].summary


def test_spf_void_lookups_and_loop(dns_lab) -> None:
    void = domain_run(dns_lab, "void.broken.test", "spf")
    assert statuses(void, "spf.void-lookups") == {FAIL}
    assert statuses(void, "spf.lookups") == {PASS}
    loop = domain_run(dns_lab, "loop.broken.test", "spf")
    assert statuses(loop, "spf.loop") == {FAIL}
    assert "loop.broken.test -> loop2.broken.test -> loop.broken.test" in of(loop, "spf.loop")[0].summary


def test_spf_counts_with_failed_queries_are_errors(dns_lab) -> None:
    findings = domain_run(dns_lab, "spf-slow.broken.test", "spf", timeout=0.5)
    for id in ("spf.lookups", "spf.void-lookups", "spf.syntax"):
        assert statuses(findings, id) == {ERROR}, id
        assert "127.0.10.99" in of(findings, id)[0].summary + of(findings, id)[0].detail
    assert statuses(findings, "spf.all") == {PASS}  # decided from the record itself


def test_spf_all_qualifier_and_size(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "plusall.broken.test", "spf"), "spf.all") == {FAIL}
    assert statuses(domain_run(dns_lab, "neutral.broken.test", "spf"), "spf.all") == {WARN}
    big = domain_run(dns_lab, "big.broken.test", "spf")
    assert statuses(big, "spf.size") == {FAIL}


def test_spf_declared_ips_and_senders(dns_lab) -> None:
    # neutral.broken.test publishes ip4:127.0.10.50 ?all; the gateway sends from .77
    ctx = context(dns_lab, stack=stack_from(declaration("neutral.broken.test")))
    findings = run(ctx, "spf")
    ip = of(findings, "spf.ip-pass")
    assert [f.status for f in ip] == [FAIL]
    assert ip[0].found == "neutral"
    assert "ip4:127.0.10.77" in ip[0].fix
    assert statuses(findings, "spf.senders") == {FAIL}
    ok = run(context(dns_lab, stack=z.load_stack("onpremise")), "spf")
    assert statuses(ok, "spf.ip-pass") == {PASS}
    assert len(of(ok, "spf.ip-pass")) == 3  # two IPv4 gateways and one IPv6
    assert statuses(ok, "spf.senders") == {PASS}


# -- DKIM -----------------------------------------------------------------------------


def _dkim_context(lab, selectors: list[str], declared_key: str = "gateway"):  # type: ignore[no-untyped-def]
    """A declaration whose DKIM records are given selectors, all declaring one key."""
    stack = stack_from(declaration("dkim.broken.test"))
    value = dkim_rules.txt_value(lab.keys.public_b64[declared_key])
    planned = tuple(Record(dkim_rules.record_name(s, "dkim.broken.test"), "TXT", value, 300, purpose="dkim") for s in selectors)
    ctx = context(lab, stack=stack)
    assert ctx.plan is not None
    return dataclasses.replace(ctx, plan=dataclasses.replace(ctx.plan, records=planned))


def _by_selector(findings, id: str) -> dict[str, Status]:  # type: ignore[no-untyped-def]
    return {f.summary.split("._domainkey", 1)[0]: f.status for f in of(findings, id)}


def test_dkim_key_records(dns_lab) -> None:
    selectors = ["good", "k1024", "k512", "revoked", "testing", "other", "garbage", "absent"]
    findings = run(_dkim_context(dns_lab, selectors), "dkim")
    assert _by_selector(findings, "dkim.resolves") == {s: (FAIL if s == "absent" else PASS) for s in selectors}
    syntax = _by_selector(findings, "dkim.syntax")
    assert syntax["garbage"] is FAIL and syntax["good"] is PASS and syntax["revoked"] is PASS
    sizes = _by_selector(findings, "dkim.key-size")
    assert (sizes["good"], sizes["k1024"], sizes["k512"], sizes["revoked"]) == (PASS, WARN, FAIL, SKIP)
    revoked = _by_selector(findings, "dkim.revoked")
    assert (revoked["revoked"], revoked["good"]) == (FAIL, PASS)
    testing = _by_selector(findings, "dkim.testing")
    assert (testing["testing"], testing["good"]) == (WARN, PASS)
    match = _by_selector(findings, "dkim.key-match")
    assert (match["good"], match["testing"], match["other"], match["k1024"]) == (PASS, PASS, FAIL, FAIL)


def test_dkim_cname_is_followed(dns_lab) -> None:
    findings = run(context(dns_lab, stack=z.load_stack("online")), "dkim")
    resolved = of(findings, "dkim.resolves")  # example.com and Odoo's alias domain mail.example.com
    assert [f.status for f in resolved] == [PASS, PASS]
    assert all("via odoo._domainkey.odoo.com" in f.summary for f in resolved)
    assert statuses(findings, "dkim.key-match") == {SKIP}  # a CNAME: the provider's key


def test_dkim_probe_signs_and_verifies_against_dns(dns_lab) -> None:
    stack = dataclasses.replace(stack_from(declaration("dkim.broken.test")), dkim=Dkim(selector="good"))
    good = run(context(dns_lab, stack=stack, private_key=dns_lab.keys.private_pem["gateway"]), "dkim")
    assert statuses(good, "dkim.probe") == {PASS}
    wrong = run(context(dns_lab, stack=stack, private_key=dns_lab.keys.private_pem["other"]), "dkim")
    assert statuses(wrong, "dkim.probe") == {FAIL}
    revoked = dataclasses.replace(stack, dkim=Dkim(selector="revoked"))
    assert statuses(run(context(dns_lab, stack=revoked, private_key=dns_lab.keys.private_pem["gateway"]), "dkim"), "dkim.probe") == {FAIL}
    slow = dataclasses.replace(stack_from(declaration("slow.broken.test")), dkim=Dkim(selector="good"))
    unreachable = of(run(context(dns_lab, stack=slow, private_key=dns_lab.keys.private_pem["gateway"], timeout=0.5), "dkim"), "dkim.probe")
    assert [f.status for f in unreachable] == [ERROR] and "127.0.10.99" in unreachable[0].summary


def test_dkim_in_domain_mode_probes_common_selectors(dns_lab) -> None:
    findings = domain_run(dns_lab, "example.com", "dkim")
    assert [f.status for f in of(findings, "dkim.resolves")] == [PASS]  # odoo._domainkey
    none = domain_run(dns_lab, "void.broken.test", "dkim")
    assert statuses(none, "dkim.resolves") == {SKIP}


# -- DMARC ----------------------------------------------------------------------------


def test_dmarc_present_and_syntax(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "void.broken.test", "dmarc"), "dmarc.present") == {FAIL}
    assert statuses(domain_run(dns_lab, "dmarc-two.broken.test", "dmarc"), "dmarc.present") == {FAIL}
    bad = domain_run(dns_lab, "dmarc-syntax.broken.test", "dmarc")
    assert statuses(bad, "dmarc.syntax") == {FAIL}
    assert "maybe" in of(bad, "dmarc.syntax")[0].summary
    good = domain_run(dns_lab, "rua-ok.broken.test", "dmarc")
    assert statuses(good, "dmarc.present") == statuses(good, "dmarc.syntax") == {PASS}
    inherited = of(domain_run(dns_lab, "mail.rua-ok.broken.test", "dmarc"), "dmarc.present")
    assert [f.status for f in inherited] == [PASS]
    assert "_dmarc.rua-ok.broken.test applies" in inherited[0].summary


def test_dmarc_policy(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "dmarc-none.broken.test", "dmarc"), "dmarc.policy") == {WARN}
    assert statuses(domain_run(dns_lab, "rua-ok.broken.test", "dmarc"), "dmarc.policy") == {PASS}
    declared = stack_from(declaration("rua-ok.broken.test", dmarc={"policy": "quarantine", "rua": ["mailto:dmarc@reports.test"]}))
    mismatch = run(context(dns_lab, stack=declared), "dmarc")
    assert statuses(mismatch, "dmarc.policy") == {FAIL}


def test_dmarc_external_reports_need_authorisation(dns_lab) -> None:
    denied = of(domain_run(dns_lab, "rua.broken.test", "dmarc"), "dmarc.report-auth")
    assert [f.status for f in denied] == [FAIL]
    assert denied[0].fix == 'rua.broken.test._report._dmarc.reports.test. IN TXT "v=DMARC1"'
    assert statuses(domain_run(dns_lab, "rua-ok.broken.test", "dmarc"), "dmarc.report-auth") == {PASS}
    assert statuses(domain_run(dns_lab, "sub.rua-ok.broken.test", "dmarc"), "dmarc.report-auth") == {PASS}  # inherited
    group = run(context(dns_lab, stack=z.load_stack("multi-company")), "dmarc")
    assert statuses(group, "dmarc.report-auth") == {PASS}  # brand-a/b authorised by group.example


def test_dmarc_alignment(dns_lab) -> None:
    # the gateway's address is not in neutral.broken.test's SPF, and no DKIM key is published
    findings = run(context(dns_lab, stack=stack_from(declaration("neutral.broken.test"))), "dmarc")
    assert statuses(findings, "dmarc.alignment") == {FAIL}
    online = run(context(dns_lab, stack=z.load_stack("online")), "dmarc")
    aligned = of(online, "dmarc.alignment")
    assert [f.status for f in aligned] == [PASS]
    assert "DKIM" in aligned[0].summary and "SPF" not in aligned[0].summary  # Return-Path is on odoo.com


# -- MX -------------------------------------------------------------------------------


def test_mx_present_as_declared(dns_lab) -> None:
    declared = stack_from(declaration("real.broken.test"))  # declares gw.real.broken.test, publishes real.broken.test
    findings = run(context(dns_lab, stack=declared), "mx")
    present = of(findings, "mx.present")
    assert [f.status for f in present] == [FAIL]
    assert (present[0].expected, present[0].found) == ("10 gw.real.broken.test", "10 real.broken.test")
    assert statuses(run(context(dns_lab, stack=z.load_stack("onpremise")), "mx"), "mx.present") == {PASS}


def test_mx_null(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "nullmix.broken.test", "mx"), "mx.null") == {FAIL}
    assert statuses(domain_run(dns_lab, "nullmx.broken.test", "mx"), "mx.null") == {PASS}


def test_mx_targets(dns_lab) -> None:
    cname = domain_run(dns_lab, "mxcname.broken.test", "mx")
    assert statuses(cname, "mx.target-cname") == {FAIL}
    assert of(cname, "mx.target-cname")[0].fix == "mxcname.broken.test. IN MX 10 real.broken.test."
    ip = domain_run(dns_lab, "mxip.broken.test", "mx")
    assert statuses(ip, "mx.target-ip") == {FAIL}
    dangling = domain_run(dns_lab, "mxdangling.broken.test", "mx")
    assert statuses(dangling, "mx.target-resolves") == {FAIL}
    good = domain_run(dns_lab, "lookups.broken.test", "mx")
    for id in ("mx.target-ip", "mx.target-cname", "mx.target-resolves"):
        assert statuses(good, id) == {PASS}, id


def test_mx_odoo_subdomain(dns_lab) -> None:
    root = domain_run(dns_lab, "rootodoo.broken.test", "mx")
    assert statuses(root, "mx.odoo-subdomain") == {FAIL}
    for name in ("online", "odoo-sh"):
        assert statuses(run(context(dns_lab, stack=z.load_stack(name)), "mx"), "mx.odoo-subdomain") == {PASS}, name


def test_mx_fcrdns(dns_lab) -> None:
    gateways = [
        {"hostname": "gw.fcrdns.broken.test", "ipv4": "127.0.10.201"},
        {"hostname": "nopt.fcrdns.broken.test", "ipv4": "127.0.10.202", "priority": 20},
        {"hostname": "unconfirmed.fcrdns.broken.test", "ipv4": "127.0.10.203", "priority": 30},
    ]
    stack = stack_from(declaration("fcrdns.broken.test", gateways=gateways))
    results = {f.summary.split(" ", 1)[0]: f.status for f in of(run(context(dns_lab, stack=stack), "mx"), "mx.fcrdns")}
    assert results == {"127.0.10.201": PASS, "127.0.10.202": FAIL, "127.0.10.203": FAIL}


# -- MTA-STS, TLS-RPT, Odoo hints -----------------------------------------------------


def test_mta_sts_and_tls_rpt(dns_lab) -> None:
    ok = run(context(dns_lab, stack=z.load_stack("onpremise")), "mta-sts", "tls-rpt")
    assert statuses(ok, "mta-sts.record") == statuses(ok, "tls-rpt.record") == {PASS}
    declared = stack_from(declaration("real.broken.test", mtaSts={"mode": "enforce"}, tlsRpt={"rua": ["mailto:tls@real.broken.test"]}))
    missing = run(context(dns_lab, stack=declared), "mta-sts", "tls-rpt")
    assert statuses(missing, "mta-sts.record") == statuses(missing, "tls-rpt.record") == {FAIL}


def test_odoo_sending_hint(dns_lab) -> None:
    assert statuses(domain_run(dns_lab, "odoo-half.broken.test", "odoo"), "odoo.sending") == {WARN}
    no_spf = of(domain_run(dns_lab, "odoo-nospf.broken.test", "odoo"), "odoo.sending")
    assert [f.status for f in no_spf] == [WARN] and "lacks include:_spf.odoo.com" in no_spf[0].summary
    assert statuses(domain_run(dns_lab, "void.broken.test", "odoo"), "odoo.sending") == {SKIP}
    assert statuses(run(context(dns_lab, stack=z.load_stack("online")), "odoo"), "odoo.sending") == {PASS}


# -- declared vs published ------------------------------------------------------------


def test_published_records_and_conflicts(dns_lab) -> None:
    stack = stack_from(declaration("two-spf.broken.test", outbound=[{"spf": "ip4:127.0.10.50"}], spf={"all": "-all"}, inbound={"mode": "none"}, gateways=[]))
    findings = run(context(dns_lab, stack=stack), "published")
    conflicts = of(findings, "published.conflicts")
    assert [f.status for f in conflicts] == [FAIL]
    assert "second SPF" in conflicts[0].summary and conflicts[0].found == "v=spf1 ip4:127.0.10.51 -all"
    records = {f.summary: f.status for f in of(findings, "published.records")}
    assert records["two-spf.broken.test TXT is live as declared"] is PASS
    assert records["_dmarc.two-spf.broken.test TXT is not published"] is FAIL
    assert records["two-spf.broken.test MX is not published"] is FAIL


def test_gateway_dkim_compared_by_presence_unless_key_given(dns_lab) -> None:
    stack = z.load_stack("onpremise")
    presence = of(run(context(dns_lab, stack=stack), "published"), "published.records")
    dkim_line = [f for f in presence if f.summary.startswith("odoo2026._domainkey")]
    assert [f.status for f in dkim_line] == [PASS] and "not compared" in dkim_line[0].summary
    other = dns_lab.keys.public_pem("other")
    findings = run(context(dns_lab, stack=stack, gateway_key=other), "published", "dkim")
    differs = [f for f in of(findings, "published.records") if f.summary.startswith("odoo2026._domainkey")]
    assert [f.status for f in differs] == [FAIL]
    assert statuses(findings, "dkim.key-match") == {FAIL}


# -- DNS failures are errors, never pass or fail --------------------------------------


@pytest.mark.parametrize("domain, reason", [("servfail.test", "SERVFAIL from 127.0.10.1:{port}"), ("slow.broken.test", "timeout from 127.0.10.99:{port}")])
def test_dns_failures_are_errors_naming_the_server(dns_lab, domain: str, reason: str) -> None:
    reason = reason.format(port=dns_lab.port)
    findings = domain_run(dns_lab, domain, "spf", "dmarc", "mx", timeout=0.5)
    decided = [f for f in findings if f.status in (PASS, FAIL, WARN)]
    assert not decided, decided
    errors = [f for f in findings if f.status is ERROR]
    assert len(errors) >= 10
    assert all(reason in f.summary for f in errors), [f.summary for f in errors]


def test_resolver_skips_a_failing_server_and_names_all_when_all_fail(dns_lab) -> None:
    from mailstack.checks.dns.resolver import DnsError, Reason, Resolver, Server

    bind = Server(z.BIND_ADDRESS, dns_lab.port)
    dead = Server(z.DEAD_ADDRESS, dns_lab.port)
    answer = Resolver((dead, bind), 0.5).txt("ten.broken.test")
    assert answer.texts() == ("v=spf1 a mx include:n1.ten.broken.test -all",)
    assert answer.server == str(bind)
    with pytest.raises(DnsError) as info:
        Resolver((bind,), 0.5).txt("outside.invalid")  # not a zone of the authoritative BIND
    assert info.value.reason is Reason.REFUSED
    with pytest.raises(DnsError) as both:
        Resolver((bind, dead), 0.5).txt("outside.invalid")
    assert both.value.servers == (bind, dead)


def test_nxdomain_and_nodata_are_answers_not_errors(dns_lab) -> None:
    resolver = dns_lab.resolver()
    nx = resolver.txt("nothing-here.broken.test")
    assert nx.void and nx.nxdomain
    nodata = resolver.query("real.broken.test", "TXT")
    assert nodata.void and not nodata.nxdomain
    chain = resolver.query("alias.broken.test", "A")
    assert chain.cnames == ("real.broken.test",) and chain.addresses() == (z.FAKE_HOST,)


def test_stale_dkim_key_beside_the_declared_one(dns_lab) -> None:
    ctx = _dkim_context(dns_lab, ["two-keys"])
    findings = run(ctx, "published", "dkim")
    conflicts = of(findings, "published.conflicts")
    assert [f.status for f in conflicts] == [FAIL]
    assert conflicts[0].found == dkim_rules.txt_value(dns_lab.keys.public_b64["other"])
    assert statuses(findings, "published.records") == {PASS}
    assert statuses(findings, "dkim.resolves") == {FAIL}  # two keys: verifiers pick either


def test_truncated_udp_answer_is_retried_over_tcp(dns_lab) -> None:
    record = dns_lab.resolver().txt("big.broken.test").texts()[0]
    assert len(record) > 512 and record.endswith("-all")  # only TCP carries it whole


def test_dmarc_alignment_never_counts_a_revoked_key(dns_lab) -> None:
    """Regression (issue 9): the alignment check decided "a key is published" by a
    substring test that took a revoked key (empty ``p=``) for a key. It now asks the
    DKIM rule module, which knows the key is revoked: no aligned path, fail."""
    revoked = run(context(dns_lab, stack=stack_from(declaration("dkim.broken.test", dkim={"selector": "revoked"}))), "dmarc")
    assert statuses(revoked, "dmarc.alignment") == {FAIL}
    good = run(context(dns_lab, stack=stack_from(declaration("dkim.broken.test", dkim={"selector": "good"}))), "dmarc")
    assert statuses(good, "dmarc.alignment") == {PASS}
