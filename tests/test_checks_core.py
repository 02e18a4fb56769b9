"""The check suite's machinery without servers: findings, registry, runner isolation
and deadline, reporters' documented shapes, resolver server parsing, and the pure
evaluation of SPF trees and declared-vs-published differences from fixtures."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET

import pytest

from mailstack.checks.dns import published
from mailstack.checks.dns.published import Change, Observed
from mailstack.checks.dns.resolver import (
    DnsError,
    Reason,
    Resolver,
    Server,
    parse_server,
)
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, Status, exit_code, summary
from mailstack.checks.engine.registry import Check, DuplicateCheck
from mailstack.checks.probes.spf_tree import SpfRecord, TermResult, budget
from mailstack.checks.report import json as report_json
from mailstack.checks.report import junit as report_junit
from mailstack.checks.report import sarif as report_sarif
from mailstack.checks.report import text as report_text
from mailstack.core.record import Record

FINDINGS = [
    Finding("spf.lookups", Status.PASS, "3 of 10"),
    Finding("spf.all", Status.WARN, "?all", fix="use ~all"),
    Finding("dkim.key-size", Status.FAIL, "512 bits", expected=">= 2048", found="512", ref="RFC 8301 §3.2"),
    Finding("mx.present", Status.ERROR, "DNS error: timeout from 127.0.0.1:53"),
    Finding("smtp.banner", Status.SKIP, "no MX"),
]


def ctx() -> CheckContext:
    return CheckContext("example.test", Resolver((Server("127.0.0.1", 9),), 0.1))


# -- findings and exit codes ----------------------------------------------------------


def test_summary_counts_every_status_in_order() -> None:
    assert summary(FINDINGS) == {"pass": 1, "warn": 1, "fail": 1, "error": 1, "skip": 1}
    assert list(summary([])) == ["pass", "warn", "fail", "error", "skip"]


def test_exit_code() -> None:
    passing = [Finding("a.b", Status.PASS, ""), Finding("a.c", Status.SKIP, "")]
    warning = [*passing, Finding("a.d", Status.WARN, "")]
    assert exit_code(passing) == 0
    assert exit_code(warning) == 0
    assert exit_code(warning, strict=True) == 1
    assert exit_code([Finding("a.e", Status.FAIL, "")]) == 1
    assert exit_code([Finding("a.f", Status.ERROR, "")]) == 1  # undecided is not ok


# -- registry -------------------------------------------------------------------------


def test_duplicate_id_is_refused() -> None:
    registry.load_builtin()
    with pytest.raises(DuplicateCheck):
        registry.check("spf.lookups")(lambda c: [])


def test_select_by_group_and_disable_by_id() -> None:
    registry.load_builtin()
    spf = registry.select(["spf"])
    assert spf and {c.group for c in spf} == {"spf"}
    assert "spf.size" not in {c.id for c in registry.select(["spf"], ["spf.size"])}
    with pytest.raises(ValueError, match="unknown check group"):
        registry.select(["nope"])
    with pytest.raises(ValueError, match="unknown check id"):
        registry.select([], ["spf.nope"])


def test_every_builtin_check_has_a_ref_and_a_dotted_id() -> None:
    registry.load_builtin()
    checks = registry.all_checks()
    assert len(checks) >= 35
    for check in checks:
        assert check.ref, check.id
        assert "." in check.id and check.id.split(".")[0] == check.group


# -- runner ---------------------------------------------------------------------------


def _check(id: str, function) -> Check:  # type: ignore[no-untyped-def]
    return Check(id, id.split(".")[0], function, ref="RFC 0000")


def test_runner_isolates_crashes_and_dns_errors_and_keeps_order() -> None:
    def crash(c: CheckContext) -> list[Finding]:
        raise ZeroDivisionError("boom")

    def dns(c: CheckContext) -> list[Finding]:
        raise DnsError("x.test", "TXT", Reason.SERVFAIL, (Server("127.0.0.1", 5300),))

    def fine(c: CheckContext) -> list[Finding]:
        return [Finding("t.fine", Status.PASS, "ok")]

    checks = [_check("t.crash", crash), _check("t.dns", dns), _check("t.fine", fine)]
    findings = runner.run(ctx(), checks, workers=3, deadline=10)
    assert [(f.id, f.status) for f in findings] == [("t.crash", Status.ERROR), ("t.dns", Status.ERROR), ("t.fine", Status.PASS)]
    assert "ZeroDivisionError: boom" in findings[0].summary
    assert "SERVFAIL from 127.0.0.1:5300 for x.test TXT" in findings[1].summary
    assert all(f.ref == "RFC 0000" for f in findings)  # filled from the registry


def test_runner_deadline_turns_a_hanging_check_into_an_error() -> None:
    release = threading.Event()

    def hang(c: CheckContext) -> list[Finding]:
        release.wait(30)
        return [Finding("t.hang", Status.PASS, "late")]

    def fine(c: CheckContext) -> list[Finding]:
        return [Finding("t.fine", Status.PASS, "ok")]

    try:
        findings = runner.run(ctx(), [_check("t.hang", hang), _check("t.fine", fine)], workers=2, deadline=0.5)
    finally:
        release.set()
    assert [(f.id, f.status) for f in findings] == [("t.hang", Status.ERROR), ("t.fine", Status.PASS)]
    assert "deadline" in findings[0].summary


def test_runner_bounds_parallelism() -> None:
    lock = threading.Lock()
    active, peak = [0], [0]
    gate = threading.Barrier(2, timeout=5)

    def work(c: CheckContext) -> list[Finding]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            gate.wait()  # two run together; a third would have to wait for a slot
        except threading.BrokenBarrierError:
            pass
        with lock:
            active[0] -= 1
        return []

    runner.run(ctx(), [_check(f"t.w{i}", work) for i in range(6)], workers=2, deadline=30)
    assert peak[0] == 2


def test_memo_computes_once_across_threads() -> None:
    c = ctx()
    calls = []

    def compute() -> int:
        calls.append(1)
        return 42

    threads = [threading.Thread(target=lambda: c.memo("k", compute)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.memo("k", compute) == 42 and len(calls) == 1


# -- reporters ------------------------------------------------------------------------


def test_json_report_has_exactly_the_documented_shape() -> None:
    doc = json.loads(report_json.render("example.test", FINDINGS))
    assert set(doc) == {"target", "checks", "summary"}
    assert doc["target"] == "example.test"
    assert all(set(c) == {"id", "status", "summary", "detail", "expected", "found", "fix", "ref"} for c in doc["checks"])
    assert [c["status"] for c in doc["checks"]] == ["pass", "warn", "fail", "error", "skip"]
    assert doc["summary"] == {"pass": 1, "warn": 1, "fail": 1, "error": 1, "skip": 1}


def test_junit_report_maps_statuses() -> None:
    root = ET.fromstring(report_junit.render("example.test", FINDINGS))
    cases = root.findall(".//testcase")
    assert len(cases) == 5
    assert root.find(".//testcase/failure").get("type") == "dkim.key-size"  # type: ignore[union-attr]
    assert root.find(".//testcase/error").get("type") == "mx.present"  # type: ignore[union-attr]
    assert len(root.findall(".//testcase/skipped")) == 1
    dkim_suite = next(s for s in root.findall("testsuite") if s.get("name") == "dkim")
    assert dkim_suite.get("failures") == "1"


def test_sarif_report() -> None:
    registry.load_builtin()
    doc = json.loads(report_sarif.render("example.test", FINDINGS))
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [f.id for f in FINDINGS]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"spf.lookups": "none", "spf.all": "warning", "dkim.key-size": "error", "mx.present": "error", "smtp.banner": "none"}
    assert run["results"][1]["message"]["text"] == "?all Fix: use ~all"


def test_text_report_groups_and_colours_only_when_asked() -> None:
    plain = report_text.render("example.test", FINDINGS)
    assert "[spf]" in plain and "[dkim]" in plain and "\033[" not in plain
    assert "fix: use ~all" in plain
    assert "\033[31m" in report_text.render("example.test", FINDINGS, colour=True)


def test_text_report_keeps_each_group_in_one_section() -> None:
    """Concurrent checks finish out of order; a group must still print as one section."""
    interleaved = [FINDINGS[0], FINDINGS[2], FINDINGS[1], FINDINGS[3]]
    text = report_text.render("example.test", interleaved)
    assert text.count("[spf]") == 1 and text.count("[dkim]") == 1
    assert text.index("spf.all") < text.index("[dkim]") < text.index("[mx]")


# -- resolver server parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, server",
    [("192.0.2.1", Server("192.0.2.1", 53)), ("127.0.0.1:5300", Server("127.0.0.1", 5300)), ("::1", Server("::1", 53)), ("[::1]:5353", Server("::1", 5353))],
)
def test_parse_server(text: str, server: Server) -> None:
    assert parse_server(text) == server


@pytest.mark.parametrize("text", ["ns1.example.com", "127.0.0.1:0", "127.0.0.1:99999", "[::1]x"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server(text)


def test_unreachable_server_is_a_typed_error() -> None:
    with pytest.raises(DnsError) as info:
        Resolver((Server("127.0.0.1", 9),), 0.2).txt("example.test")
    assert info.value.reason in (Reason.TIMEOUT, Reason.UNREACHABLE)
    assert info.value.servers == (Server("127.0.0.1", 9),)


# -- pure evaluation ------------------------------------------------------------------


def test_spf_budget_from_a_hand_built_tree() -> None:
    leaf = SpfRecord("b.test", ("v=spf1 a mx -all",), (TermResult("a", 1, False, 0), TermResult("mx", 1, True, 0)))
    root = SpfRecord(
        "a.test",
        ("v=spf1 include:b.test a:nx.test -all",),
        (TermResult("include:b.test", 1 + leaf.lookups, False, leaf.voids, leaf), TermResult("a:nx.test", 1, True, 0)),
    )
    b = budget(root)
    assert (b.lookups, b.voids) == (4, 2)
    assert b.describe() == "include:b.test=3, a:nx.test=1"
    assert not b.over_lookups and not b.over_voids


def test_published_compare_is_pure() -> None:
    planned = [
        Record("d.test", "TXT", "v=spf1 ip4:192.0.2.1 -all", 300, purpose="spf"),
        Record("d.test", "MX", "mx.d.test", 300, 10, purpose="mx"),
        Record("_dmarc.d.test", "TXT", "v=DMARC1; p=reject", 300, purpose="dmarc"),
        Record("k._domainkey.d.test", "TXT", "v=DKIM1; k=rsa; p=<generated-by-pulumi>", 300, purpose="dkim", needs_gateway_key=True),
    ]
    observed = {
        ("d.test", "TXT"): Observed("d.test", "TXT", (Record("d.test", "TXT", "v=spf1 ip4:192.0.2.1 -all", 60), Record("d.test", "TXT", "v=spf1 -all", 60), Record("d.test", "TXT", "google-site-verification=x", 60))),
        ("d.test", "MX"): Observed("d.test", "MX", (Record("d.test", "MX", "mx.d.test", 60, 20),)),
        ("_dmarc.d.test", "TXT"): Observed("_dmarc.d.test", "TXT"),
        ("k._domainkey.d.test", "TXT"): Observed("k._domainkey.d.test", "TXT", (Record("k._domainkey.d.test", "TXT", "v=DKIM1; k=rsa; p=", 60),)),
    }
    diffs = published.compare(planned, observed)
    changes = [(d.name, d.type, d.change) for d in diffs]
    assert ("d.test", "TXT", Change.SAME) in changes
    assert ("d.test", "TXT", Change.EXTRA) in changes  # the second SPF, not the verification TXT
    assert sum(1 for d in diffs if d.change is Change.EXTRA) == 1
    assert ("d.test", "MX", Change.DIFFERENT) in changes  # priority 20, declared 10
    assert ("_dmarc.d.test", "TXT", Change.MISSING) in changes
    assert ("k._domainkey.d.test", "TXT", Change.DIFFERENT) in changes  # revoked: not a valid key


def test_published_compare_reports_cname_and_errors() -> None:
    planned = [Record("d.test", "TXT", "v=spf1 -all", 300, purpose="spf"), Record("_dmarc.d.test", "TXT", "v=DMARC1; p=none", 300, purpose="dmarc")]
    error = DnsError("_dmarc.d.test", "TXT", Reason.TIMEOUT, (Server("127.0.0.1", 53),))
    observed = {("d.test", "TXT"): Observed("d.test", "TXT", cname="elsewhere.test"), ("_dmarc.d.test", "TXT"): Observed("_dmarc.d.test", "TXT", error=error)}
    diffs = published.compare(planned, observed)
    assert [d.change for d in diffs] == [Change.DIFFERENT, Change.UNKNOWN]
    assert "CNAME to elsewhere.test" in diffs[0].note
    assert "timeout from 127.0.0.1:53" in diffs[1].note


def test_every_check_id_is_documented_with_its_ref() -> None:
    registry.load_builtin()
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "checks.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    missing = [c.id for c in registry.all_checks() if c.id not in rows]
    assert not missing, f"undocumented check ids: {missing}"


def test_cached_resolver_asks_a_failing_question_once() -> None:
    resolver = Resolver((Server("127.0.0.1", 9),), 0.2).cached()
    errors = []
    for _ in range(2):
        with pytest.raises(DnsError) as info:
            resolver.txt("example.test")
        errors.append(info.value)
    assert str(errors[0]) == str(errors[1])
    assert (resolver.stats.sent, resolver.stats.cached) == (1, 1)  # the second ask came from the run's cache
    uncached = Resolver((Server("127.0.0.1", 9),), 0.2)
    for _ in range(2):
        with pytest.raises(DnsError):
            uncached.txt("example.test")
    assert uncached.stats.sent == 2


def test_mta_sts_policy_parse_round_trip_and_errors() -> None:
    from mailstack.rules import mta_sts

    text = mta_sts.policy_text("enforce", ["mx2.d.test", "mx1.d.test"], 86400)
    assert mta_sts.parse_policy(text) == {"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mx1.d.test", "mx2.d.test"]}
    assert mta_sts.parse_policy("version: STSv1\nmode: none\nmax_age: 0\n")["mx"] == []
    for bad in ("mode: enforce\n", "version: STSv1\nmode: enforce\nmax_age: 86400\n", "version: STSv1\nmode: on\nmx: a\nmax_age: 1\n",
                "version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999\n", "garbage\n"):
        with pytest.raises(mta_sts.PolicyError):
            mta_sts.parse_policy(bad)
