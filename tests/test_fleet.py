"""``mailstack check`` in fleet mode against the test BIND: several --stack/--domain,
--all-stacks and --domains-file in one run, reported per target in every format with
one exit code; the progress line on a terminal only; the domains file read strictly
(exit 2, naming the lines, before any query)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailstack.checks import domains_file
from mailstack.cli import main as cli
from tests import project
from tests.checks_fixtures import dns_lab  # noqa: F401
from tests.dns_stub import StubServer

DNS = ["--only", "spf", "--only", "dmarc", "--only", "mx"]
GOOD, BAD = "example.com", "lookups.broken.test"


def check(lab, *args: str) -> int:  # type: ignore[no-untyped-def]
    return cli.main(["check", "--nameserver", lab.nameserver, "--timeout", "1", *args])


def test_fleet_text_reports_each_target_then_a_summary_line_each(dns_lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.ROOT)
    assert check(dns_lab, "--stack", "online", "--domain", BAD, "--domain", GOOD, "--domain", "EXAMPLE.com.", *DNS) == 1
    out = capsys.readouterr().out
    assert out.count("mailstack check ") == 3  # online's example.com, the broken one, example.com once
    summary = out[out.index("== 3 targets"):].splitlines()
    assert summary[1].startswith("example.com [stacks/Pulumi.online.yaml]: ") and summary[1].endswith("(ok)")
    assert summary[2].startswith(f"{BAD}: ") and summary[2].endswith("(FAILED)")
    assert summary[3].startswith("example.com: ") and summary[3].endswith("(ok)")
    assert summary[4].endswith("; 1 of 3 targets failed")


def test_fleet_json_junit_sarif_per_target(dns_lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.ROOT)
    targets = ["--stack", "online", "--stack-file", str(project.stack_path("multi-company")), "--domain", BAD]
    assert check(dns_lab, *targets, *DNS, "--format", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(t["target"], t["ok"]) for t in doc["targets"]] == [("example.com", True), ("group.example", True), (BAD, False)]
    assert doc["targets"][0]["stack"] == "stacks/Pulumi.online.yaml" and doc["targets"][2]["stack"] is None
    assert doc["failed"] == 1 and doc["summary"]["fail"] == sum(t["summary"]["fail"] for t in doc["targets"]) > 0
    assert all(c["id"].split(".")[0] in ("spf", "dmarc", "mx") for t in doc["targets"] for c in t["checks"])

    report = tmp_path / "fleet.xml"
    assert check(dns_lab, *targets, *DNS, "--format", "junit", "--output", str(report)) == 1
    printed = capsys.readouterr().out.splitlines()  # the report went to the file: the summary lines to stdout
    assert [line.split(" ")[0].rstrip(":") for line in printed] == ["example.com", "group.example", BAD]
    suites = ET.parse(report).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["example.com", "group.example", BAD]
    assert suites[2].get("failures") != "0" and suites[0].get("failures") == "0"
    assert {c.get("classname") for c in suites[1].iter("testcase")} >= {"group.example.spf", "group.example.dmarc"}

    assert check(dns_lab, *targets, *DNS, "--format", "sarif") == 1
    sarif = json.loads(capsys.readouterr().out)
    (run,) = sarif["runs"]
    located = {(r["locations"][0]["logicalLocations"][0]["name"], "physicalLocation" in r["locations"][0]) for r in run["results"]}
    assert located == {("example.com", True), ("group.example", True), (BAD, False)}
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in run["results"])


def test_all_stacks_and_a_domains_file_in_one_run(dns_lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.ROOT)
    listed = tmp_path / "domains.txt"
    listed.write_text(f"# customers\n\n{GOOD}\n{GOOD.upper()}.  # the same, once\n  {BAD}\n", encoding="utf-8")
    code = check(dns_lab, "--all-stacks", "--domains-file", str(listed), "--only", "spf", "--format", "json")
    doc = json.loads(capsys.readouterr().out)
    stacks = [t for t in doc["targets"] if t["stack"]]
    assert len(stacks) == len(project.all_stacks())
    assert [t["target"] for t in doc["targets"] if not t["stack"]] == [GOOD, BAD]
    assert code == 1 and doc["failed"] >= 1


def test_one_target_keeps_the_single_target_shapes(dns_lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert check(dns_lab, "--domain", GOOD, "--only", "spf", "--format", "json") == 0
    assert set(json.loads(capsys.readouterr().out)) == {"target", "checks", "summary"}
    listed = tmp_path / "one.txt"
    listed.write_text(f"{GOOD}\n", encoding="utf-8")
    assert check(dns_lab, "--domains-file", str(listed), "--only", "spf", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)  # a domains file is a fleet, whatever it holds
    assert set(doc) == {"targets", "summary", "failed"} and [t["target"] for t in doc["targets"]] == [GOOD]


def test_a_bad_stack_in_a_fleet_names_its_file_and_stops_before_any_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  mailstack:domain: example.com\n  mailstack:dmarc: {policy: rejectt}\n", encoding="utf-8")
    with StubServer() as stub:
        assert cli.main(["check", "--nameserver", stub.nameserver, "--domain", "a.stub.test", "--stack-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: mailstack:dmarc.policy" in err
    assert stub.received == 0


def test_gateway_keys_belong_to_one_stack(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.ROOT)
    pem = tmp_path / "key.pem"
    pem.write_text("x")
    assert cli.main(["check", "--stack", "online", "--stack", "onpremise", "--dkim-public-key", str(pem)]) == 2
    assert "belongs to one stack" in capsys.readouterr().err


# -- the domains file: hostile input, read before anything is asked -------------------


def test_domains_file_blanks_comments_duplicates() -> None:
    lines = ["", "# a comment", "Example.COM.", "example.com", "  mail.example.org   # trailing comment", "\t", "example.org"]
    assert domains_file.parse(lines, "f.txt") == ("example.com", "mail.example.org", "example.org")


def test_domains_file_reports_every_invalid_line_and_exits_2_before_any_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "domains.txt"
    path.write_text("good.stub.test\nnot a domain\n\n192.0.2.1\nexa_mple.stub.test\nsingle\nok.stub.test\n", encoding="utf-8")
    with StubServer() as stub:
        assert cli.main(["check", "--nameserver", stub.nameserver, "--domains-file", str(path), "--only", "spf"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[1] for line in err] == [f"{path}:2", f"{path}:4", f"{path}:5", f"{path}:6"]
    assert "'not a domain' is not a domain name" in err[0] and "IP address" in err[1]
    assert stub.received == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"# nothing but comments\n\n", "no domain in the file"),
        (b"ok.example\n" + b"x" * 5000 + b"\n", ":2: line longer than 1024 characters"),
        (b"\xff\xfe binary\n", "not a UTF-8 text file"),
    ],
)
def test_domains_file_refuses_empty_long_and_binary(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "domains.txt"
    path.write_bytes(content)
    with pytest.raises(domains_file.DomainsFileError) as info:
        domains_file.read(str(path))
    assert message in str(info.value)


def test_a_missing_domains_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["check", "--domains-file", str(tmp_path / "none.txt")]) == 2
    assert "No such file" in capsys.readouterr().err


# -- the progress line: a terminal's stderr only ---------------------------------------


def _run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``mailstack check ARGS`` with stderr on a pseudo-terminal; (exit, stderr)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailstack.cli", "check", *args],
        stdout=subprocess.DEVNULL, stderr=terminal, cwd=project.ROOT, env={**os.environ, "TERM": "dumb"},
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return process.wait(30), seen.decode(errors="replace")


def test_progress_line_on_a_terminal_and_not_with_json(dns_lab) -> None:
    targets = ["--nameserver", dns_lab.nameserver, "--domain", GOOD, "--domain", BAD, "--only", "spf"]
    code, err = _run_on_a_terminal(targets)
    assert code == 1
    assert "[2/2 targets] 1 failing" in err and "\r\033[K" in err
    code, err = _run_on_a_terminal([*targets, "--format", "json"])
    assert code == 1 and "targets]" not in err


def test_no_progress_line_when_stderr_is_not_a_terminal(dns_lab) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailstack.cli", "check", "--nameserver", dns_lab.nameserver, "--domain", GOOD, "--domain", BAD, "--only", "spf"],
        capture_output=True, text=True, cwd=project.ROOT, timeout=60,
    )
    assert result.returncode == 1 and result.stderr == ""
    assert "== 2 targets" in result.stdout
