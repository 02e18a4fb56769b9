"""Every case of issue 10's fuzz run, each refused: exit 2, a message naming the key
(or the file, for what is wrong with the YAML itself), no traceback, nothing rendered.

The declarations are the example stack ``onpremise`` (two gateways, TLS files, the
mailgate, DMARC and TLS-RPT reports) with one value changed, run through the CLI in
process (``mailstack.cli.main.main``) and, for a few, as a real process.
"""

from __future__ import annotations

import copy
import os
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack.cli import main as cli
from tests import project

ONPREMISE = yaml.safe_load(project.stack_path("onpremise").read_text(encoding="utf-8"))
INJECTION = "\nsmtpd_relay_restrictions = permit"


def mutated(dotted: str, value: Any) -> dict[str, Any]:
    """The onpremise stack document with ``config.<dotted>`` set (``mailstack:`` keys
    are one segment: ``mailstack:gateway.tls.cert``)."""
    document = copy.deepcopy(ONPREMISE)
    top, *rest = dotted.split(".")
    node = document["config"]
    if not rest:
        node[top] = value
        return document
    node = node.setdefault(top, {})
    for key in rest[:-1]:
        node = node.setdefault(key, {})
    node[rest[-1]] = value
    return document


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *command: str) -> tuple[int, str]:
    """``mailstack <command> --stack-file F`` in process: (exit code, stderr)."""
    stack_file = tmp_path / "Pulumi.hostile.yaml"
    stack_file.write_text(text, encoding="utf-8")
    extra = ["--out", str(tmp_path / "out")] if command[0] == "render" else []
    code = cli.main([*command, "--stack-file", str(stack_file), *extra])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, key: str, tmp_path: Path) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert any(line.startswith(f"error: {key}") for line in lines), err
    assert not (tmp_path / "out").exists(), "nothing may be rendered for a refused stack"


# -- config injection: a newline (CR, NUL) in any string reaching a file or record -----

INJECTED_KEYS = [
    "mailstack:gateway.tls.cert",
    "mailstack:gateway.tls.key",
    "mailstack:odoo.url",
    "mailstack:gateway.mailgate.url",
    "mailstack:gateway.mailgate.login",
    "mailstack:gateway.mailgate.passwordFile",
    "mailstack:gateway.mailgate.database",
    "mailstack:gateway.smtpAuth.user",
    "mailstack:odoo.database",
]
REPORT_KEYS = ["mailstack:dmarc.rua", "mailstack:dmarc.ruf", "mailstack:tlsRpt.rua"]
GOOD = {
    "mailstack:gateway.tls.cert": "/etc/ssl/gw.pem",
    "mailstack:gateway.tls.key": "/etc/ssl/gw.key",
    "mailstack:odoo.url": "https://odoo.example.net",
    "mailstack:gateway.mailgate.url": "https://odoo.example.net",
    "mailstack:gateway.mailgate.login": "mailgate",
    "mailstack:gateway.mailgate.passwordFile": "/etc/mailstack/odoo-password",
    "mailstack:gateway.mailgate.database": "production",
    "mailstack:gateway.smtpAuth.user": "odoo",
    "mailstack:odoo.database": "production",
}


@pytest.mark.parametrize("control", ["\n", "\r", "\x00", "\x85", "\u2028"], ids=["LF", "CR", "NUL", "NEL", "LSEP"])
@pytest.mark.parametrize("key", INJECTED_KEYS)
def test_a_control_character_in_a_rendered_value_is_refused(key: str, control: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = GOOD[key] + control + INJECTION.lstrip("\n")
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated(key, value)), "render")
    assert_refused(code, err, key, tmp_path)
    assert "control character" in err


@pytest.mark.parametrize("uri", ["mailto:reports@example.net\n", "https://reports.example.net/a\x00b"], ids=["LF", "NUL"])
@pytest.mark.parametrize("key", REPORT_KEYS)
@pytest.mark.parametrize("command", [("records", "--format", "zone"), ("render",)], ids=["zone", "render"])
def test_a_control_character_in_a_report_uri_never_reaches_a_record(
    key: str, uri: str, command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated(key, [uri])), *command)
    assert_refused(code, err, f"{key}[0]", tmp_path)


def test_the_good_values_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline of the cases above: each key with its good value renders."""
    document = copy.deepcopy(ONPREMISE)
    for key, value in GOOD.items():
        document = _set(document, key, value)
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "render")
    assert code == 0, err
    main_cf = (tmp_path / "out" / "mx1.example.net" / "postfix" / "main.cf").read_text()
    assert main_cf.count("smtpd_relay_restrictions") == 1


def _set(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    top, *rest = dotted.split(".")
    node = document["config"].setdefault(top, {})
    for key in rest[:-1]:
        node = node.setdefault(key, {})
    node[rest[-1]] = value
    return document


# -- shell injection on the gateway host ------------------------------------------------

def test_a_password_file_with_shell_metacharacters_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = mutated("mailstack:gateway.mailgate.passwordFile", "/etc/x; touch /root/owned; echo ")
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "render")
    assert_refused(code, err, "mailstack:gateway.mailgate.passwordFile", tmp_path)
    assert "shell and config metacharacters" in err


@pytest.mark.parametrize("path", ["/etc/../root/x", "etc/x", "/etc/x y", "/etc/$(id)", "/etc/x`id`", "/etc/x/", "/etc//x"])
def test_paths_are_plain_absolute_paths(path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:gateway.tls.cert", path)), "render")
    assert_refused(code, err, "mailstack:gateway.tls.cert", tmp_path)


# -- tracebacks and hangs ---------------------------------------------------------------

def test_deep_nesting_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "config:\n  mailstack:dmarc: " + "[" * 600 + "]" * 600 + "\n"
    code, err = run(tmp_path, capsys, text, "records")
    assert code == 2 and "Traceback" not in err and "RecursionError" not in err
    assert err.startswith(f"error: {tmp_path / 'Pulumi.hostile.yaml'}: line 2: nested more than 20 levels deep"), err


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["config:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    lines.append("  mailstack:inbound: {mode: forward, mx: *a9}")
    tracemalloc.start()
    code, err = run(tmp_path, capsys, "\n".join(lines) + "\n", "records")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and "line 2: anchor &a0 refused" in err and "Traceback" not in err
    assert peak < 20e6, f"refusing an alias bomb took {peak / 1e6:.0f} MB"


def test_a_huge_list_costs_one_short_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = mutated("mailstack:inbound", {"mode": "forward", "mx": [{"host": "mx.example.org"} for _ in range(20000)]})
    document["config"].pop("mailstack:mtaSts")
    text = yaml.safe_dump(document, default_flow_style=True, width=1 << 30)  # 20,000 x 22 bytes: 440 KB
    assert len(text) > 256 * 1024  # a stack file this big is not even read ...
    code, err = run(tmp_path, capsys, text, "records")
    assert code == 2 and err.endswith("larger than 256 KB: not a stack file\n"), err
    document = mutated("mailstack:inbound", {"mode": "forward", "mx": [1] * 20000})
    document["config"].pop("mailstack:mtaSts")
    text = yaml.safe_dump(document, default_flow_style=True, width=1 << 30)  # ... this one is (60 KB)
    tracemalloc.start()
    code, err = run(tmp_path, capsys, text, "records")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_refused(code, err, "mailstack:inbound.mx: 20000 MX hosts, over the limit of 10", tmp_path)
    assert len(err) < 2000, err
    assert peak < 100e6, f"refusing 20,000 MX hosts took {peak / 1e6:.0f} MB"


def test_many_bad_values_give_a_bounded_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = mutated("mailstack:dmarc", {f"tag{i}": "x" * 50 for i in range(2000)})
    code, err = run(tmp_path, capsys, yaml.safe_dump(document, default_flow_style=True, width=1 << 30), "records")
    assert_refused(code, err, "mailstack:dmarc.tag0: unknown key", tmp_path)
    assert err.splitlines()[-1] == "error: mailstack: ... and 1950 more errors (only the first 50 are shown)"
    assert len(err) < 50 * 300


def test_a_huge_value_is_quoted_in_80_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = mutated("mailstack:dmarc.policy", "r" * 100000)
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert_refused(code, err, "mailstack:dmarc.policy", tmp_path)
    assert len(err) < 300, err


# -- silent misconfiguration ------------------------------------------------------------

@pytest.mark.parametrize("key", ["mailstak:dmarc", "Mailstack:dmarc", "MAILSTACK:dmarc", "mailstack.dmarc", "mailstck:dmarc", "dmarc"])
def test_a_namespace_typo_is_an_error(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = copy.deepcopy(ONPREMISE)
    document["config"][key] = document["config"].pop("mailstack:dmarc")
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert code == 2 and "Traceback" not in err
    assert f"error: {tmp_path / 'Pulumi.hostile.yaml'}: config key '{key}' is not in the mailstack namespace" in err
    assert "did you mean mailstack:dmarc?" in err


def test_other_namespaces_are_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = copy.deepcopy(ONPREMISE)
    document["config"].update({"cloudflare:apiToken": {"secure": "AAAB"}, "aws:region": "eu-west-1", "mailgun:domain": "x"})
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert code == 0, err


def test_an_unknown_key_says_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = copy.deepcopy(ONPREMISE)
    document["config"]["mailstack:dmarcc"] = document["config"].pop("mailstack:dmarc")
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert_refused(code, err, "mailstack:dmarcc: unknown key; did you mean mailstack:dmarc?", tmp_path)
    document = mutated("mailstack:dmarc.Policy", "reject")
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert_refused(code, err, "mailstack:dmarc.Policy: unknown key; did you mean mailstack:dmarc.policy?", tmp_path)


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = project.stack_path("onpremise").read_text() + "  mailstack:dmarc:\n    policy: none\n"
    code, err = run(tmp_path, capsys, text, "records")
    assert code == 2 and "Traceback" not in err
    assert "duplicate key 'mailstack:dmarc' (first at line" in err and err.startswith(f"error: {tmp_path}"), err


def test_a_nested_duplicate_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "config:\n  mailstack:dmarc:\n    policy: reject\n    policy: none\n"
    code, err = run(tmp_path, capsys, text, "records")
    assert code == 2 and "line 4: duplicate key 'policy' (first at line 3): keep one" in err


def test_a_stack_file_without_config_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = yaml.safe_dump(ONPREMISE["config"])  # the keys, without the config: wrapper
    code, err = run(tmp_path, capsys, text, "records")
    assert code == 2 and "no 'config:' key" in err and "indent them under config:" in err
    assert "mailstack:domain: is required" not in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("spf.size", "mailstack:checks.disable: must be a list of check ids"),
        (["spf size"], "mailstack:checks.disable[0]: 'spf size' is not a check id"),
        ([1], "mailstack:checks.disable[0]: must be a string"),
        ({"x": 1}, "mailstack:checks.disable: must be a list of check ids"),
    ],
)
def test_checks_is_validated(value: Any, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:checks", {"disable": value})), "records")
    assert_refused(code, err, message, tmp_path)
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:checks", {"enable": ["spf.size"]})), "records")
    assert_refused(code, err, "mailstack:checks.enable: unknown key", tmp_path)


def test_a_huge_dmarc_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = "mailto:" + "r" * 209000 + "@example.net"  # the file limit (256 KB) leaves room for 209 KB
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:dmarc.rua", [uri])), "records")
    assert_refused(code, err, "mailstack:dmarc.rua[0]: is 209019 characters long, over the limit of 4096", tmp_path)
    many = [f"mailto:dmarc{i}@example.net" for i in range(6)]
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:dmarc.rua", many)), "records")
    assert_refused(code, err, "mailstack:dmarc.rua: 6 report URIs, over the limit of 5 (RFC 7489 §6.2", tmp_path)


def test_a_dmarc_record_over_one_txt_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_uris = [f"https://reports{i}.example.net/" + "a" * 1000 for i in range(4)]
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:dmarc.ruf", long_uris)), "records")
    assert_refused(code, err, "mailstack:dmarc.ruf: ", tmp_path)
    assert "bytes in the DMARC TXT record, over the limit of 4096 (Cloudflare's maximum record size" in err


def test_3000_mx_hosts_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hosts = [{"host": f"mx{i}.example.org"} for i in range(3000)]
    document = mutated("mailstack:inbound", {"mode": "forward", "mx": hosts})
    document["config"].pop("mailstack:mtaSts")
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records")
    assert_refused(code, err, "mailstack:inbound.mx: 3000 MX hosts, over the limit of 10", tmp_path)


@pytest.mark.parametrize("key", ["mailstack:odoo.url", "mailstack:gateway.mailgate.url"])
def test_a_url_with_credentials_is_refused(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated(key, "https://admin:hunter2@odoo.example.net")), "render")
    assert_refused(code, err, key, tmp_path)
    assert "carries credentials" in err and "hunter2" in err.split("carries")[0]  # quoted, never written anywhere else


@pytest.mark.parametrize("key", ["odooPassword", "smtpAuthPassword", "tsigSecret", "sshPrivateKey"])
def test_a_plain_text_secret_shows_the_pulumi_command(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated(f"mailstack:{key}", "hunter2")), "records")
    assert_refused(code, err, f"mailstack:{key}: is a secret given in plain text", tmp_path)
    assert f"`pulumi config set --secret mailstack:{key}`" in err
    assert "hunter2" not in err  # the secret itself is never echoed


def test_an_encrypted_secret_is_accepted_and_an_encrypted_non_secret_is_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:odooPassword", {"secure": "AAABAcipher"})), "records")
    assert code == 0, err
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:domain", {"secure": "AAABAcipher"})), "records")
    assert_refused(code, err, "mailstack:domain: is encrypted (secure:), but it is not a secret", tmp_path)


@pytest.fixture
def umask_000() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_key_directories_are_0700_whatever_the_umask(umask_000: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_file = tmp_path / "dkim.pem"
    pem_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out = tmp_path / "out"
    assert cli.main(["render", "--stack", "onpremise", "--project-dir", str(project.ROOT), "--out", str(out), "--dkim-private-key", str(pem_file)]) == 0
    capsys.readouterr()
    host = out / "mx1.example.net"
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes["mx1.example.net/opendkim/keys"] == 0o700
    assert modes["mx1.example.net/opendkim/keys/odoo2026.private"] == 0o600
    assert all(mode & 0o022 == 0 for mode in modes.values()), {p: oct(m) for p, m in modes.items() if m & 0o022}
    assert stat.S_IMODE((host / "postfix").stat().st_mode) == 0o755


def test_lab_secrets_are_in_0700_directories_whatever_the_umask(umask_000: None, tmp_path: Path) -> None:
    from mailstack.lab.state import LabState, write_secret

    write_secret(tmp_path / "a" / "b" / "key.private", "secret")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b" / "key.private").stat().st_mode) == 0o600
    state = LabState(tmp_path / "state" / "lab")
    state.prepare()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    # once the lab runs, the service users must reach their role directories: the
    # parents prepare created are opened too (traversable, never listable)
    state = LabState(tmp_path / "lab-state" / "lab", stack_file=str(project.stack_path("lab")))
    state.prepare()
    state.open_to_roles()
    for directory in (tmp_path / "lab-state", state.root, state.root / "stacks", state.stack_root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o711, directory
    assert stat.S_IMODE(state.secrets.stat().st_mode) == 0o700


# -- --stack NAME is a name, never a path -----------------------------------------------

@pytest.mark.parametrize("name", ["../stacks/Pulumi.online", "../../etc/passwd", "a/b", "..", ".hidden", "x\ny"])
def test_stack_names_are_not_paths(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["records", "--stack", name, "--project-dir", str(project.ROOT)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --stack ") and "Traceback" not in err
    assert "is not a stack name" in err or "control character" in err


# -- the real process: exit code and stderr as a shell sees them ------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (yaml.safe_dump(mutated("mailstack:gateway.tls.cert", "/etc/x" + INJECTION)), "error: mailstack:gateway.tls.cert: "),
        ("config:\n  mailstack:dmarc: " + "[" * 600 + "]" * 600 + "\n", "nested more than 20 levels deep"),
        ("config:\n  a: &a [1]\n  b: *a\n", "anchor &a refused"),
    ],
    ids=["injection", "depth", "alias"],
)
def test_as_a_process(text: str, expected: str, tmp_path: Path) -> None:
    stack_file = tmp_path / "Pulumi.hostile.yaml"
    stack_file.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "mailstack.cli", "render", "--stack-file", str(stack_file), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()


# -- DANE digests reach a TLSA record: only 64 hex digits get there ---------------------

@pytest.mark.parametrize("key", ["mailstack:gateway.tls.dane.digest", "mailstack:gateway.tls.dane.next"])
@pytest.mark.parametrize("value", ["ab" * 32 + "\n_25._tcp.evil TLSA 3 1 1 00", "ab" * 31, "ab" * 32 + "00", 12345, ["ab" * 32]],
                         ids=["newline", "short", "long", "number", "list"])
def test_a_dane_digest_that_is_not_64_hex_digits_never_reaches_a_record(key: str, value: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = mutated("mailstack:gateway.tls.dane.digest", "cd" * 32)
    document = _set(document, key, value)
    code, err = run(tmp_path, capsys, yaml.safe_dump(document), "records", "--format", "zone")
    assert_refused(code, err, key, tmp_path)


def test_dane_without_a_digest_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, yaml.safe_dump(mutated("mailstack:gateway.tls.dane", {"next": "ab" * 32})), "records")
    assert_refused(code, err, "mailstack:gateway.tls.dane.digest", tmp_path)
