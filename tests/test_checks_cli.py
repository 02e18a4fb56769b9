"""``mailstack check`` end to end against the test BIND: exit codes, formats, output
file, stack-file disabling, and usage errors (exit 2)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from mailstack.cli import main as cli
from mailstack.config import stackfile
from tests import project
from tests.checks_fixtures import dns_lab  # noqa: F401

DNS_ONLY = ["--only", "spf", "--only", "dkim", "--only", "dmarc", "--only", "mx", "--only", "published"]


def check(lab, *args: str) -> int:  # type: ignore[no-untyped-def]
    return cli.main(["check", "--nameserver", lab.nameserver, "--timeout", "1", *args])


def test_declared_stack_passes_with_exit_0_and_json(dns_lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pem = tmp_path / "dkim.pem"
    pem.write_text(dns_lab.keys.public_pem("gateway"))
    # As the suite serves it (tests/check_zones.load_stack): the policy from the suite's
    # own server, not from the gateways' documentation addresses.
    document = yaml.safe_load(project.stack_path("onpremise").read_text())
    document["config"]["mailstack:mtaSts"]["serve"] = "external"
    stack_file = tmp_path / "Pulumi.onpremise.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    assert check(dns_lab, "--stack-file", str(stack_file), "--format", "json", "--dkim-public-key", str(pem), *DNS_ONLY) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "example.net"
    assert doc["summary"]["fail"] == doc["summary"]["error"] == 0
    statuses = {c["id"]: c["status"] for c in doc["checks"]}
    assert statuses["dkim.key-match"] == "pass"  # compared by content: the key was given


def test_failing_domain_exits_1(dns_lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(dns_lab, "--domain", "lookups.broken.test", "--only", "spf") == 1
    out = capsys.readouterr().out
    assert "FAIL  spf.lookups" in out and "include:n1.lookups.broken.test=9" in out
    assert "\033[" not in out  # not a terminal: no colour


def test_warnings_fail_only_when_strict(dns_lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(dns_lab, "--domain", "dmarc-none.broken.test", "--only", "dmarc") == 0
    assert "WARN  dmarc.policy" in capsys.readouterr().out
    assert check(dns_lab, "--domain", "dmarc-none.broken.test", "--only", "dmarc", "--strict") == 1


def test_dns_error_exits_1_and_names_the_server(dns_lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(dns_lab, "--domain", "servfail.test", "--only", "dmarc", "--format", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["error"] >= 1 and doc["summary"]["fail"] == 0
    assert f"SERVFAIL from {dns_lab.nameserver}" in doc["checks"][0]["summary"]


def test_output_file_junit(dns_lab, tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    assert check(dns_lab, "--domain", "plusall.broken.test", "--only", "spf", "--format", "junit", "--output", str(out)) == 1
    root = ET.parse(out).getroot()
    failures = [f.get("type") for f in root.iter("failure")]
    assert "spf.all" in failures


def test_stack_file_disables_checks_by_id(dns_lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = project.stack_path("online").read_text()
    path = tmp_path / "Pulumi.disabled.yaml"
    path.write_text(text + "  mailstack:checks:\n    disable: [spf.size, spf.loop]\n")
    assert check(dns_lab, "--stack-file", str(path), "--only", "spf", "--format", "json") == 0
    ids = {c["id"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert "spf.lookups" in ids and not ids & {"spf.size", "spf.loop"}
    assert cli.main(["records", "--stack-file", str(path)]) == 0  # other commands accept the key
    path.write_text(text + "  mailstack:checks:\n    disable: spf.size\n")
    assert check(dns_lab, "--stack-file", str(path)) == 2
    assert "mailstack:checks.disable: must be a list of check ids" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--domain", "example.com", "--nameserver", "ns1.example.com"], "--nameserver"),
        (["--domain", "example.com", "--only", "nope"], "unknown check group"),
        (["--domain", "not a domain"], "--domain"),
        (["--stack", "no-such-stack"], "no such stack file"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", *args]) == 2
    assert message in capsys.readouterr().err


def test_target_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check"]) == 2
    assert "no target" in capsys.readouterr().err


def test_sarif_points_at_the_stack_file(dns_lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.ROOT)
    assert check(dns_lab, "--stack", "online", "--only", "spf", "--format", "sarif") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2.1.0"
    location = doc["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "stacks/Pulumi.online.yaml"
    assert location["logicalLocations"][0]["name"] == "example.com"
