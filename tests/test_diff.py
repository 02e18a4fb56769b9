"""``mailstack diff`` against real BIND servers on loopback: a zone that serves the
plan, zones that drifted in every way the diff reports, servers that cannot answer,
and ``--wait`` polling two authoritative servers until both serve the plan."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from mailstack import plan as planning
from mailstack.checks.dns.diff import (
    authoritative_servers,
    diff_servers,
    selector_names,
    wait_until_agreed,
)
from mailstack.checks.dns.published import Change
from mailstack.checks.dns.resolver import Resolver, Server
from mailstack.cli import main as cli
from mailstack.config import stackfile
from mailstack.core import txt
from mailstack.core.record import Record
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from mailstack.rules import dkim
from tests import project
from tests.project import planned as plan
from tests.pulumi_harness import public_pem, rsa_key
from tests.servers import require_binary, require_root

#: This suite's loopback addresses and DNS ports on the host network namespace.
ADDRESSES = [f"127.0.30.{i}" for i in range(1, 255)]
PORTS = range(5340, 5360)
ONLINE = stackfile.load(project.stack_path("online"))
ONPREMISE = stackfile.load(project.stack_path("onpremise"))
ONLINE_PLAN = planning.build(ONLINE)
ONLINE_RECORDS = list(ONLINE_PLAN.records)


def free_port(address: str) -> int:
    """A port of PORTS that nobody holds on ``address``. named binds with SO_REUSEPORT,
    so a second named (another test run on this machine) could share a port and the
    kernel would split the queries between the two zones; probing without
    SO_REUSEPORT finds a port that is really free."""
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS} on {address}")


def _server(tmp_path: Path, name: str) -> BindServer:
    """A named on an address of 127.0.30.0/24 that is not on lo yet, at a free port.

    BindServer adds the address and removes it at stop; an address no other run holds
    keeps a concurrent run of this suite (several engineers, one machine) from removing
    it under our server."""
    require_root()
    require_binary("named")
    free = [a for a in ADDRESSES if not netns.has_address(a)]
    assert free, "every address of 127.0.30.0/24 is in use"
    address = random.choice(free)
    return BindServer(tmp_path / name, address, free_port(address))


def at(bind: BindServer) -> Server:
    return Server(bind.address, bind.port)


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[BindServer]:
    bind = _server(tmp_path, "primary")
    bind.add_zone("example.com", ONLINE_RECORDS)
    with bind:
        yield serving(bind)


@pytest.fixture
def secondary(tmp_path: Path) -> Iterator[BindServer]:
    bind = _server(tmp_path, "secondary")
    bind.add_zone("example.com", ONLINE_RECORDS)
    with bind:
        yield serving(bind)


def serving(bind: BindServer, zone: str = "example.com") -> BindServer:
    """Block until the server answers for the zone with its current SOA serial: named
    reloads after SIGHUP in the background, and a query before that sees the old zone."""
    query = dns.message.make_query(zone, "SOA")
    for _ in range(200):
        try:
            response = dns.query.udp(query, bind.address, port=bind.port, timeout=0.5)
            if response.answer and next(iter(response.answer[0])).serial == bind.soa_serial:  # type: ignore[attr-defined]
                return bind
        except dns.exception.Timeout:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{bind.address}:{bind.port} never served {zone} serial {bind.soa_serial}")


def replace(bind: BindServer, records: list[Record], extra_lines: list[str] | None = None) -> None:
    """Rewrite the zone and make named load it. named skips a zone file whose mtime
    (whole seconds) has not changed since it loaded it, so the rewritten file gets a
    later mtime before the reload signal."""
    bind.replace_zone("example.com", records, extra_lines or [])
    zone_file = bind.workdir / "example.com.zone"
    later = time.time() + 10 * bind.soa_serial
    os.utime(zone_file, (later, later))
    assert bind.process is not None
    bind.process.send_signal(signal.SIGHUP)
    serving(bind)


def ns(bind: BindServer) -> str:
    return f"{bind.address}:{bind.port}"


def run_diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["diff", *args])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code, out = run_diff(capsys, *args, "--format", "json")
    return code, json.loads(out)


def changes(document: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    return {(r["change"], r["name"], r["type"]) for s in document["servers"] for r in s["records"] if r["change"] != "same"}


def test_zone_serving_the_plan_is_equal(primary: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, "--stack", "online", "--nameserver", ns(primary))
    assert code == 0
    assert document["equal"] is True
    (server,) = document["servers"]
    assert server["server"] == ns(primary)
    same = {(r["name"], r["type"]) for r in server["records"] if r["change"] == "same"}
    assert same == {(r.name, r.type) for r in ONLINE_RECORDS}
    code, text = run_diff(capsys, "--stack", "online", "--nameserver", ns(primary))
    assert code == 0 and f"{len(ONLINE_RECORDS)} as declared, 0 missing, 0 different, 0 extra, 0 errors" in text


def test_drifted_zone_shows_missing_different_extra_and_unmanaged(primary: BindServer, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    kept = [r for r in ONLINE_RECORDS if r.name != "_dmarc.example.com" and not (r.name == "example.com" and r.type == "TXT")]
    mailjet_key = dkim.txt_value(public_pem(rsa_key(2048)))
    replace(
        primary,
        kept,
        [
            '@ 300 IN TXT "v=spf1 include:_spf.google.com ~all"',  # edited by hand
            'mail 300 IN TXT "v=spf1 include:spf.mailjet.com ~all"',  # a second SPF
            "mail 300 IN MX 20 backup.example.net.",  # an MX nobody declared
            f"mailjet._domainkey 300 IN TXT {txt.quoted(mailjet_key)}",  # a sender removed from the stack
            "selector1._domainkey 300 IN CNAME selector1-example-com._domainkey.old.onmicrosoft.com.",
            'unrelated 300 IN TXT "not looked at"',
        ],
    )
    code, document = run_json(capsys, "--stack", "online", "--nameserver", ns(primary))
    assert code == 1 and document["equal"] is False
    assert changes(document) == {
        ("missing", "_dmarc.example.com", "TXT"),
        ("different", "example.com", "TXT"),
        ("extra", "mail.example.com", "TXT"),
        ("unmanaged", "mail.example.com", "MX"),
        ("unmanaged", "mailjet._domainkey.example.com", "TXT"),
        ("unmanaged", "selector1._domainkey.example.com", "CNAME"),
    }
    records = {(r["change"], r["name"], r["type"]): r for r in document["servers"][0]["records"]}
    different = records[("different", "example.com", "TXT")]
    assert different["declared"]["content"] == "v=spf1 include:_spf.odoo.com ~all"
    assert [r["content"] for r in different["live"]] == ["v=spf1 include:_spf.google.com ~all"]
    assert records[("extra", "mail.example.com", "TXT")]["note"] == "a second SPF record"
    assert records[("unmanaged", "mail.example.com", "MX")]["live"][0] == {
        "name": "mail.example.com", "type": "MX", "content": "backup.example.net", "ttl": 300, "priority": 20
    }
    assert "receives mail for mail.example.com too" in records[("unmanaged", "mail.example.com", "MX")]["note"]
    assert records[("unmanaged", "mailjet._domainkey.example.com", "TXT")]["live"][0]["content"] == mailjet_key
    assert "DKIM selector selector1, which the stack does not declare" in records[("unmanaged", "selector1._domainkey.example.com", "CNAME")]["note"]

    code, text = run_diff(capsys, "--stack", "online", "--nameserver", ns(primary))
    assert code == 1
    assert "  different example.com TXT\n            declared: v=spf1 include:_spf.odoo.com ~all\n            live:     v=spf1 include:_spf.google.com ~all" in text
    assert "  missing   _dmarc.example.com TXT" in text and "  unmanaged mail.example.com MX\n" in text
    assert "1 missing, 1 different, 1 extra, 0 errors; 3 unmanaged (not mailstack's, left alone)" in text

    # the previous deployment's records say which of them were mailstack's: those are stale
    previous = [*ONLINE_RECORDS, Record("mailjet._domainkey.example.com", "TXT", mailjet_key, 300),
                Record("selector1._domainkey.example.com", "CNAME", "selector1-example-com._domainkey.old.onmicrosoft.com", 300)]
    owned = tmp_path / "previous.json"
    owned.write_text(json.dumps([r.as_json() for r in previous]), encoding="utf-8")
    code, document = run_json(capsys, "--stack", "online", "--nameserver", ns(primary), "--owned", str(owned))
    assert code == 1
    assert {c for c in changes(document) if c[0] in ("extra", "unmanaged")} == {
        ("extra", "mail.example.com", "TXT"),
        ("unmanaged", "mail.example.com", "MX"),
        ("extra", "mailjet._domainkey.example.com", "TXT"),
        ("extra", "selector1._domainkey.example.com", "CNAME"),
    }
    records = {(r["change"], r["name"], r["type"]): r for r in document["servers"][0]["records"]}
    assert "stale DKIM selector selector1: mailstack's" in records[("extra", "selector1._domainkey.example.com", "CNAME")]["note"]


def test_unmanaged_records_alone_are_not_drift(primary: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    replace(primary, ONLINE_RECORDS, ['@ 300 IN TXT "google-site-verification=abc"', "mail 300 IN MX 50 backup.example.net."])
    code, document = run_json(capsys, "--stack", "online", "--nameserver", ns(primary))
    assert code == 0 and document["equal"] is True
    assert changes(document) == {("unmanaged", "example.com", "TXT"), ("unmanaged", "mail.example.com", "MX")}


def test_gateway_key_compared_by_presence_or_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = public_pem(rsa_key(2048))
    (tmp_path / "key.pem").write_text(pem, encoding="utf-8")
    other = tmp_path / "other.pem"
    other.write_text(public_pem(rsa_key(3072)), encoding="utf-8")
    bind = _server(tmp_path, "onprem")
    bind.add_zone("example.net", plan(ONPREMISE, pem))
    with bind:
        serving(bind, "example.net")
        base = ["--stack", "onpremise", "--nameserver", ns(bind)]
        code, document = run_json(capsys, *base)
        assert code == 0
        key_rows = [r for r in document["servers"][0]["records"] if r["name"] == "odoo2026._domainkey.example.net"]
        assert [r["change"] for r in key_rows] == ["present"]
        assert run_json(capsys, *base, "--dkim-public-key", str(tmp_path / "key.pem"))[0] == 0
        code, document = run_json(capsys, *base, "--dkim-public-key", str(other))
        assert code == 1
        assert changes(document) == {("different", "odoo2026._domainkey.example.net", "TXT")}


def test_server_that_refuses_is_an_error_not_drift(primary: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The primary serves example.com only; asking it about contoso.example is REFUSED."""
    code, document = run_json(capsys, "--stack", "onpremise-m365", "--nameserver", ns(primary))
    assert code == 2
    rows = document["servers"][0]["records"]
    assert rows and {r["change"] for r in rows} == {"error"}
    assert all("REFUSED" in r["note"] for r in rows)


def test_bad_nameserver_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diff", "--stack", "online", "--nameserver", "mx.example.com:53"]) == 2
    assert "is not an IP address" in capsys.readouterr().err


def test_selector_names_cover_known_senders_not_declared() -> None:
    found = selector_names(ONLINE_PLAN)
    assert "odoo._domainkey.example.com" not in found  # declared
    for selector in ("google", "mailjet", "selector1", "selector2", "mailstack"):
        assert f"{selector}._domainkey.example.com" in found
        assert f"{selector}._domainkey.mail.example.com" in found  # Odoo's alias domain sends too


def test_authoritative_servers_come_from_the_zone_ns(primary: BindServer) -> None:
    resolver = Resolver((at(primary),), timeout=3)
    assert authoritative_servers(["example.com"], resolver, port=primary.port) == [at(primary)]


def test_wait_polls_until_every_server_serves_the_plan(primary: BindServer, secondary: BindServer) -> None:
    stale = [r for r in ONLINE_RECORDS if r.name != "_dmarc.example.com"]
    replace(secondary, stale)
    servers = [at(primary), at(secondary)]
    fixes: list[str] = []

    def apply_change_then_sleep(seconds: float) -> None:
        if not fixes:  # the zone transfer arrives while we wait
            replace(secondary, ONLINE_RECORDS)
            fixes.append("done")
        else:
            time.sleep(seconds)

    result = wait_until_agreed(
        lambda: diff_servers(ONLINE_PLAN, servers, timeout=3),
        3600,
        interval=0.2,
        sleep=apply_change_then_sleep,
    )
    assert result.agreed and fixes
    assert result.polls >= 2
    assert all(d.change is Change.SAME for r in result.results for d in r.diffs if d.declared)


def test_wait_reports_the_server_still_behind(primary: BindServer, secondary: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--stack", "online", "--nameserver", ns(primary), "--nameserver", ns(secondary), "--interval", "0.1"]
    code, text = run_diff(capsys, *args, "--wait", "5")
    assert code == 0 and "all servers serve the plan (1 polls)" in text

    replace(secondary, [r for r in ONLINE_RECORDS if r.type != "MX"])
    code, document = run_json(capsys, *args, "--wait", "0.3")
    assert code == 1
    by_server = {s["server"]: s for s in document["servers"]}
    assert by_server[ns(primary)]["equal"] is True
    assert by_server[ns(secondary)]["equal"] is False
    assert changes({"servers": [by_server[ns(secondary)]]}) == {("missing", "mail.example.com", "MX")}
    assert document["polls"] >= 1 and document["wait"] == 0.3


def test_records_planned_equal_records_served(primary: BindServer) -> None:
    """The diff's notion of equality is the plan's Record equality, via zone files."""
    (result,) = diff_servers(ONLINE_PLAN, [at(primary)], timeout=3)
    live = {r for d in result.diffs for r in d.live}
    assert {Record(r.name, r.type, r.content, 300, r.priority) for r in ONLINE_RECORDS} <= {
        Record(r.name, r.type, r.content, 300, r.priority) for r in live
    }


def test_check_waits_for_the_plan_then_reports_junit(
    primary: BindServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CI step after ``pulumi up``: wait for the authoritative server, then check."""
    report = tmp_path / "report.xml"
    code = cli.main(
        ["check", "--stack", "online", "--nameserver", ns(primary), "--wait", "5", "--only", "published",
         "--format", "junit", "--output", str(report)]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--wait: the servers serve the plan after 1 polls" in err
    assert "<testsuite" in report.read_text(encoding="utf-8")


def test_check_wait_needs_a_declaration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--domain", "example.com", "--wait", "1"]) == 2
    assert "--wait needs a declaration" in capsys.readouterr().err


def test_dmarc_walk_against_the_authoritative_primary_decides_without_errors(
    primary: BindServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CI gate's setting, ``--nameserver <primary>``: BIND answers for example.com
    and refuses ``_dmarc.com`` above it (no recursion, not its zone). RFC 9989's tree
    walk then goes on as for no record there, so the DMARC checks decide, where they
    reported ``error`` when the refusal ended the walk. (Following Odoo's DKIM CNAME to
    odoo.com is another question this server cannot answer: that one stays an error.)"""
    cli.main(["check", "--stack", "online", "--nameserver", ns(primary), "--only", "dmarc", "--format", "json"])
    findings = json.loads(capsys.readouterr().out)["checks"]
    by_id = {f["id"]: f for f in findings}
    assert by_id["dmarc.present"]["status"] == "pass" and by_id["dmarc.policy"]["status"] == "pass", findings
    walk_errors = [f for f in findings if f["status"] == "error" and "_dmarc." in f["summary"]]
    assert not walk_errors, walk_errors


def test_dmarc_on_a_server_that_refuses_the_domain_itself_is_an_error(
    primary: BindServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that serves another zone refuses the domain's own question too: the
    walk never started, nothing is decided — ``error``, exit 1, never ``pass``."""
    code = cli.main(["check", "--domain", "example.org", "--nameserver", ns(primary), "--only", "dmarc", "--format", "json"])
    findings = json.loads(capsys.readouterr().out)["checks"]
    assert code == 1 and any(f["status"] == "error" and "REFUSED" in f["summary"] for f in findings), findings
    assert not any(f["status"] == "pass" for f in findings)
