"""``mailstack records``: table, JSON and zone output, config errors, --dkim-public-key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack.cli import main as cli
from mailstack.config import stackfile
from tests import project
from tests.project import planned as plan

ROOT = Path(__file__).resolve().parent.parent
BAD_POLICY = """\
config:
  mailstack:domain: example.com
  mailstack:odoo: {hosting: online, database: db}
  mailstack:outbound: [odoo]
  mailstack:inbound: {mode: odoo-mx, subdomain: mail}
  mailstack:dmarc: {policy: rejectt}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a child process: exit code, stdout and stderr as users see them."""
    return subprocess.run(
        [sys.executable, "-m", "mailstack.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def records_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert cli.main(["records", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("stack_file", project.all_stacks(), ids=[p.name for p in project.all_stacks()])
def test_json_shape_for_every_stack(stack_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = records_json(capsys, "--stack-file", str(stack_file))
    assert data and all(list(item) == ["name", "type", "content", "ttl", "priority"] for item in data)
    for item in data:
        assert isinstance(item["name"], str) and not item["name"].endswith(".")
        assert isinstance(item["ttl"], int)
        if item["type"] == "MX":
            assert isinstance(item["priority"], int)
        else:
            assert item["priority"] is None
        if item["type"] in ("MX", "CNAME"):
            assert not str(item["content"]).endswith(".") or item["content"] == "."
        if item["type"] == "TXT":
            assert not str(item["content"]).startswith('"'), "TXT content is plain: unquoted, unsplit"
    assert data == [r.as_json() for r in plan(stackfile.load(stack_file))]


def test_json_online_values(capsys: pytest.CaptureFixture[str]) -> None:
    data = records_json(capsys, "--stack", "online")
    assert {"name": "example.com", "type": "TXT", "content": "v=spf1 include:_spf.odoo.com ~all", "ttl": 3600, "priority": None} in data
    assert {"name": "mail.example.com", "type": "MX", "content": "examplecorp.odoo.com", "ttl": 3600, "priority": 10} in data
    assert {"name": "odoo._domainkey.example.com", "type": "CNAME", "content": "odoo._domainkey.odoo.com", "ttl": 3600, "priority": None} in data


def test_table_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["records", "--stack", "online"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "TTL", "PRIO", "CONTENT"]
    rows = [" ".join(line.split()) for line in lines[1:]]
    assert "mail.example.com MX 3600 10 examplecorp.odoo.com" in rows
    assert "example.com TXT 3600 v=spf1 include:_spf.odoo.com ~all" in rows
    # Columns line up: every row's TYPE starts where the header's does.
    assert {line.index(" TXT ") if " TXT " in line else line.index(" TYPE ") for line in lines if " TXT " in line or " TYPE " in line} == {lines[0].index(" TYPE ")}
    assert len(rows) == len(plan(stackfile.load(project.stack_path("online"))))


@pytest.mark.parametrize("stack_file", project.all_stacks(), ids=[p.name for p in project.all_stacks()])
def test_zone_format_parses_with_dnspython(stack_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["records", "--stack-file", str(stack_file), "--format", "zone"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    records = plan(stackfile.load(stack_file))
    assert len(lines) == len(records)
    zone = dns.zone.from_text(text, origin=".", relativize=False, check_origin=False)
    for record in records:
        rdataset = zone.find_rdataset(record.name + ".", record.type)
        assert rdataset.ttl == record.ttl
        texts = {rd.to_text() for rd in rdataset}
        if record.type == "TXT":
            joined = {b"".join(rd.strings).decode() for rd in rdataset}  # type: ignore[attr-defined]
            assert record.content in joined
            assert all(len(s) <= 255 for rd in rdataset for s in rd.strings)  # type: ignore[attr-defined]
        elif record.type == "MX":
            target = "." if record.content == "." else record.content + "."
            assert f"{record.priority} {target}" in texts
        elif record.type == "CNAME":
            assert record.content + "." in texts


def test_config_error_exit_2_and_message(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(BAD_POLICY)
    result = run_cli("records", "--stack-file", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: mailstack:dmarc.policy: 'rejectt' is not one of none, quarantine, reject\n"


def test_several_config_errors_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(BAD_POLICY + "  mailstack:outbound2: [odoo]\n  mailstack:dkim: {bits: 512}\n")
    assert cli.main(["records", "--stack-file", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: mailstack:outbound2: unknown key")
    assert err[1:] == [
        "error: mailstack:dkim.bits: 512 is not between 1024 and 4096",
        "error: mailstack:dmarc.policy: 'rejectt' is not one of none, quarantine, reject",
    ]


def test_spf_over_budget_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    terms = " ".join(f"include:s{i}.example.net" for i in range(10))
    path = tmp_path / "Pulumi.spf.yaml"
    path.write_text(
        "config:\n  mailstack:domain: example.com\n  mailstack:odoo: {hosting: online, database: db}\n"
        f"  mailstack:outbound: [odoo, {{spf: '{terms}'}}]\n  mailstack:inbound: {{mode: forward}}\n"
    )
    assert cli.main(["records", "--stack-file", str(path)]) == 2
    assert capsys.readouterr().err == (
        "error: mailstack:outbound: example.com: SPF needs 11 DNS lookups at its top level, over the limit of 10 (RFC 7208 §4.6.4)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack", "no-such-stack"], "no such stack file"),
        (["--stack-file", "/nonexistent/Pulumi.x.yaml"], "no such stack file"),
    ],
)
def test_missing_stack_exit_2(args: list[str], message: str) -> None:
    result = run_cli("records", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_invalid_yaml_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.y.yaml"
    path.write_text("config:\n  mailstack:domain: [unclosed\n")
    result = run_cli("records", "--stack-file", str(path))
    assert result.returncode == 2 and "not valid YAML" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli("records").returncode == 2  # --stack or --stack-file is required
    assert run_cli("records", "--stack", "online", "--format", "xml").returncode == 2
    assert run_cli("records", "--stack", "online", "--stack-file", "x").returncode == 2


def test_help_says_where_the_dkim_key_comes_from() -> None:
    result = run_cli("records", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--dkim-public-key" in text and "placeholder" in text and "<generated-by-pulumi>" in text


@pytest.fixture(scope="module")
def public_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    path = tmp_path_factory.mktemp("key") / "dkim.pem"
    path.write_text(pem)
    return path, base64.b64encode(der).decode()


def test_gateway_key_placeholder_without_key(capsys: pytest.CaptureFixture[str]) -> None:
    data = records_json(capsys, "--stack", "onpremise")
    dkim = [d for d in data if d["name"] == "odoo2026._domainkey.example.net"]
    assert dkim == [{"name": "odoo2026._domainkey.example.net", "type": "TXT", "content": "v=DKIM1; k=rsa; p=<generated-by-pulumi>", "ttl": 3600, "priority": None}]


def test_dkim_public_key_file(public_pem: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, b64 = public_pem
    data = records_json(capsys, "--stack", "onpremise", "--dkim-public-key", str(path))
    dkim = [d for d in data if d["name"] == "odoo2026._domainkey.example.net"]
    assert [d["content"] for d in dkim] == [f"v=DKIM1; k=rsa; p={b64}"]
    assert cli.main(["records", "--stack", "onpremise", "--dkim-public-key", str(path), "--format", "zone"]) == 0
    zone_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("odoo2026._domainkey"))
    assert zone_line.count('" "') == 1, "a 2048-bit key TXT is two character-strings"


def test_dkim_public_key_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    result = run_cli("records", "--stack", "onpremise", "--dkim-public-key", str(bad))
    assert result.returncode == 2 and f"--dkim-public-key {bad}:" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("records", "--stack", "onpremise", "--dkim-public-key", str(tmp_path / "missing.pem"))
    assert result.returncode == 2 and "missing.pem" in result.stderr and "Traceback" not in result.stderr


def test_records_doc_listings_match_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/records.md shows `--format zone` output per example stack; keep it true."""
    import re

    doc = (ROOT / "docs" / "records.md").read_text(encoding="utf-8")
    sections = re.findall(r"\(`stacks/Pulumi\.([\w-]+)\.yaml`\)\n(.*?)(?=\n### |\n## |\Z)", doc, re.S)
    assert len(sections) >= 5
    checked = 0
    for stack, body in sections:
        blocks = re.findall(r"```\n(.*?)```", body, re.S)
        if not blocks:
            continue
        assert cli.main(["records", "--stack", stack, "--format", "zone"]) == 0
        actual = capsys.readouterr().out.splitlines()
        shown = blocks[0].strip().splitlines()
        assert len(shown) == len(actual), stack
        for doc_line, line in zip(shown, actual):
            prefix = doc_line.split("…", 1)[0]
            assert line.startswith(prefix) if "…" in doc_line else line == doc_line, (stack, doc_line, line)
        checked += 1
    assert checked >= 4


def test_unreadable_stack_file_exit_2(tmp_path: Path) -> None:
    result = run_cli("records", "--stack-file", str(tmp_path))  # a directory
    assert result.returncode == 2 and "cannot read the stack file" in result.stderr and "Traceback" not in result.stderr
    binary = tmp_path / "Pulumi.bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00config")
    result = run_cli("records", "--stack-file", str(binary))
    assert result.returncode == 2 and "not a UTF-8 text file" in result.stderr and "Traceback" not in result.stderr
