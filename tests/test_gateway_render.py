"""Rendered gateway configuration: real Postfix and OpenDKIM accept it, it says what the
stack says, it is deterministic, and bad input is refused naming its key."""

from __future__ import annotations

import copy
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstack import plan
from mailstack.cli import main as cli
from mailstack.config import stackfile
from mailstack.config.gateway import parse_relay_host
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors
from mailstack.gateway import render
from mailstack.lab import binaries
from mailstack.rules import mta_sts
from tests import project
from tests.project import planned
from tests.servers import require_binary

GATEWAY_STACKS = [p for p in project.all_stacks() if stackfile.load(p).gateways]
NO_GATEWAY_STACKS = [p for p in project.all_stacks() if not stackfile.load(p).gateways]


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def base_config() -> dict[str, Any]:
    return {
        "domain": "example.org",
        "aliasDomains": ["brand.example"],
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.org", "database": "prod"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": ["sales", "jobs"]},
        "gateways": [{"hostname": "mx1.example.org", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "gw2026"},
        "mtaSts": {"mode": "enforce"},
        "gateway": {"odooAddresses": ["10.0.0.5"], "relayHost": "[smtp.relay.example]:587"},
    }


def written(tmp_path: Path, files: dict[str, render.RenderedFile]) -> Path:
    out = tmp_path / "rendered"
    render.write(files, out)
    for relative in render.POSTMAP_FILES:
        if relative in files:
            subprocess.run([binaries.binary("postmap"), "-c", str(out / "postfix"), str(out / relative)], check=True)
    return out


@pytest.mark.parametrize("path", GATEWAY_STACKS, ids=lambda p: p.stem)
def test_example_stacks_render_and_postfix_accepts_them(path: Path, tmp_path: Path, private_key_pem: str) -> None:
    require_binary("postconf")
    require_binary("opendkim")
    stack = stackfile.load(path)
    for gateway in stack.gateways:
        out = tmp_path / gateway.hostname
        layout = render.Layout(opendkim_dir=str(out / "opendkim"), mailstack_dir=str(out / "mailstack"))
        files = render.render(plan.build(stack), dkim_private_key_pem=private_key_pem, gateway=gateway, layout=layout)
        render.write(files, out)
        for relative in render.POSTMAP_FILES:
            if relative in files:
                subprocess.run([binaries.binary("postmap"), "-c", str(out / "postfix"), str(out / relative)], check=True)
        postconf = subprocess.run([binaries.binary("postconf"), "-c", str(out / "postfix"), "-n"], capture_output=True, text=True)
        assert postconf.returncode == 0 and postconf.stderr == "", postconf.stderr
        assert f"myhostname = {gateway.hostname}" in postconf.stdout
        master = subprocess.run([binaries.binary("postconf"), "-c", str(out / "postfix"), "-M"], capture_output=True, text=True)
        assert master.returncode == 0 and master.stderr == "", master.stderr
        check = subprocess.run([binaries.binary("postfix"), "-c", str(out / "postfix"), "check"], capture_output=True, text=True)
        assert check.returncode == 0 and check.stderr == "", check.stderr
        dkim = subprocess.run([binaries.binary("opendkim"), "-n", "-x", str(out / "opendkim" / "opendkim.conf")], capture_output=True, text=True)
        assert dkim.returncode == 0, dkim.stderr + dkim.stdout


def test_generated_config_is_accepted_with_every_option(tmp_path: Path, private_key_pem: str) -> None:
    require_binary("postconf")
    raw = base_config()
    raw["gateway"].update(smtpAuth={"user": "odoo"}, tls={"cert": "/etc/ssl/gw.pem", "key": "/etc/ssl/gw.key", "required": True},
                          rateLimits={"connections": 10}, messageSizeLimit=10485760,
                          mailgate={"concurrency": 24})
    raw["inbound"]["acceptAll"] = True
    files = render.render(plan.build(from_config(raw)), dkim_private_key_pem=private_key_pem)
    out = written(tmp_path, files)
    postconf = subprocess.run([binaries.binary("postconf"), "-c", str(out / "postfix"), "-n"], capture_output=True, text=True)
    assert postconf.returncode == 0 and postconf.stderr == ""
    check = subprocess.run([binaries.binary("postfix"), "-c", str(out / "postfix"), "check"], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    assert "postfix/sasl/smtpd.conf" in files and "postfix/relay_recipients" not in files
    assert "relay_recipient_maps =\n" in files["postfix/main.cf"].text
    assert "smtpd_tls_security_level=encrypt" in files["postfix/master.cf"].text
    assert "smtpd_client_connection_rate_limit = 10\n" in files["postfix/main.cf"].text
    assert "message_size_limit = 10485760\n" in files["postfix/main.cf"].text
    assert "odoo_destination_concurrency_limit = 24\n" in files["postfix/main.cf"].text
    odoo_conf = files["odoo/odoo.conf"].text
    assert "smtp_port = 587\n" in odoo_conf and "smtp_ssl = True\n" in odoo_conf and "smtp_user = odoo\n" in odoo_conf


def main_cf(files: dict[str, render.RenderedFile]) -> dict[str, str]:
    values = {}
    for line in files["postfix/main.cf"].text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_inbound_is_relay_domains_plus_transport_never_a_virtual_alias() -> None:
    files = render.render(plan.build(from_config(base_config())))
    conf = main_cf(files)
    assert conf["relay_domains"] == "brand.example, example.org"
    assert conf["transport_maps"] == "hash:${config_directory}/transport"
    assert "virtual_alias_maps" not in conf and "virtual_alias_domains" not in conf
    assert conf["odoo_destination_recipient_limit"] == "50"  # a message's recipients in one run
    assert conf["odoo_destination_concurrency_limit"] == "8"  # gateway.mailgate.concurrency's default
    # The default delivery: LMTP to the resident mailgate, one next hop for all domains.
    assert files["postfix/transport"].text.splitlines()[2:] == ["brand.example\todoo:inet:127.0.0.1:10028",
                                                                "example.org\todoo:inet:127.0.0.1:10028"]
    master = files["postfix/master.cf"].text
    assert "\nodoo      unix  -       -       n       -       -       lmtp\n  -o lmtp_data_done_timeout=120s\n" in master
    assert "pipe" not in master.split("\nodoo ")[1]
    assert "listen = 127.0.0.1:10028\nconcurrency = 8\n" in files["mailstack/mailgate.conf"].text
    unit = files["systemd/mailstack-mailgate.service"].text
    assert "User=mailgate\n" in unit and "Before=postfix.service\n" in unit
    assert ("ExecStart=/usr/bin/python3 -I -S /usr/local/lib/mailstack/mailgated.py --config /etc/mailstack/mailgate.conf\n"
            in unit)  # the password is read from its file, never in argv
    # gateway.mailgate.delivery: pipe — a mailgate process per message, no service.
    config = base_config()
    config["gateway"].setdefault("mailgate", {})["delivery"] = "pipe"
    piped = render.render(plan.build(from_config(config)))
    assert piped["postfix/transport"].text.splitlines()[2:] == ["brand.example\todoo:odoo", "example.org\todoo:odoo"]
    master = piped["postfix/master.cf"].text
    assert "flags=Rq user=mailgate argv=" in master and "--recipient ${original_recipient}" in master
    assert "systemd/mailstack-mailgate.service" not in piped and "listen" not in piped["mailstack/mailgate.conf"].text
    recipients = {line.split("\t")[0] for line in files["postfix/relay_recipients"].text.splitlines()[1:]}
    for domain in ("example.org", "brand.example"):
        for local in ("catchall", "bounce", "postmaster", "abuse", "sales", "jobs"):
            assert f"{local}@{domain}" in recipients
    assert len(recipients) == 12  # not notifications@: Odoo routes it only as a reply
    assert conf["relay_recipient_maps"] == "socketmap:inet:127.0.0.1:10027:odoo"  # mailstack-aliasd asks Odoo
    assert conf["recipient_delimiter"] == ""  # Odoo 17 strips no +detail
    aliasd = files["mailstack/aliasd.conf"].text
    assert "static_file = /etc/postfix/relay_recipients" in aliasd and "domains = brand.example,example.org" in aliasd


def test_an_outbound_only_gateway_receives_nothing(tmp_path: Path) -> None:
    require_binary("postconf")
    raw = base_config()
    raw["inbound"] = {"mode": "imap", "mx": "google"}
    del raw["mtaSts"]
    files = render.render(plan.build(from_config(raw)))
    assert main_cf(files)["relay_domains"] == ""
    assert [line for line in files["postfix/transport"].text.splitlines() if not line.startswith("#")] == []
    assert [line for line in files["postfix/relay_recipients"].text.splitlines() if not line.startswith("#")] == []
    assert "*@example.org\tgw2026._domainkey.example.org" in files["opendkim/SigningTable"].text  # still signs
    out = written(tmp_path, files)
    check = subprocess.run([binaries.binary("postfix"), "-c", str(out / "postfix"), "check"], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr


def test_never_an_open_relay_and_smuggling_and_limits() -> None:
    conf = main_cf(render.render(plan.build(from_config(base_config()))))
    assert conf["mynetworks"] == "10.0.0.5/32"
    # port 25 is the MX only: it relays for nobody, not even Odoo's host (Odoo submits on 587)
    assert conf["smtpd_relay_restrictions"] == "reject_unauth_destination"
    assert conf["smtpd_milters"] == "" and conf["local_header_rewrite_clients"] == ""
    assert conf["relayhost"] == "[smtp.relay.example]:587"
    assert conf["smtpd_forbid_bare_newline"] == "normalize"
    assert conf["smtpd_tls_security_level"] == "may"  # STARTTLS offered on port 25
    assert conf["mydestination"] == "" and conf["local_recipient_maps"] == ""
    assert conf["maillog_file"] == "/var/log/postfix.log"
    assert int(conf["message_size_limit"]) > 0
    assert conf["milter_default_action"] == "tempfail"  # never send unsigned


def test_opendkim_signs_every_domain_with_the_selector() -> None:
    stack = from_config(base_config())
    files = render.render(plan.build(stack))
    assert files["opendkim/KeyTable"].text.splitlines() == [
        "gw2026._domainkey.brand.example\tbrand.example:gw2026:/etc/opendkim/keys/gw2026.private",
        "gw2026._domainkey.example.org\texample.org:gw2026:/etc/opendkim/keys/gw2026.private",
    ]
    assert files["opendkim/SigningTable"].text.splitlines() == [
        "*@brand.example\tgw2026._domainkey.brand.example",
        "*@example.org\tgw2026._domainkey.example.org",
    ]
    assert files["opendkim/TrustedHosts"].text.splitlines() == ["10.0.0.5/32"]
    dkim_names = {r.name for r in planned(stack) if r.purpose == "dkim"}
    assert dkim_names == {"gw2026._domainkey.example.org", "gw2026._domainkey.brand.example"}


def test_odoo_conf_mail_section_uses_odoo_17_keys() -> None:
    text = render.render(plan.build(from_config(base_config())))["odoo/odoo.conf"].text
    options = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith(";"))
    assert options == {
        "smtp_server": "mx1.example.org",
        "smtp_port": "587",
        "smtp_ssl": "False",
        "smtp_user": "False",
        "email_from": "notifications@example.org",
        "from_filter": "brand.example,example.org",
    }


def test_odoo_on_the_gateway_host_submits_over_loopback() -> None:
    raw = base_config()
    del raw["gateway"]["odooAddresses"]
    files = render.render(plan.build(from_config(raw)))
    assert "smtp_server = 127.0.0.1\n" in files["odoo/odoo.conf"].text
    assert main_cf(files)["mynetworks"] == "127.0.0.0/8 [::1]/128"


def test_mta_sts_policy_matches_the_record_id() -> None:
    stack = from_config(base_config())
    files = render.render(plan.build(stack))
    for domain in stack.domains:  # each domain's own policy, under its own document root
        policy = files[f"mta-sts/{domain}/.well-known/mta-sts.txt"].text
        assert "mx: mx1.example.org\r\n" in policy and "mode: enforce\r\n" in policy
        txt = next(r for r in planned(stack) if r.name == f"_mta-sts.{domain}")
        assert txt.content == mta_sts.txt_value(policy)
        assert f"server_name mta-sts.{domain};\n    ssl_certificate {stack.gateway.tls.cert};" in files[render.NGINX_SITE].text  # type: ignore[union-attr]
        assert f"root /var/www/mta-sts/{domain};" in files[render.NGINX_SITE].text
    raw = base_config()
    del raw["mtaSts"]
    assert not [f for f in render.render(plan.build(from_config(raw))) if f.startswith(("mta-sts/", "nginx/"))]
    raw = {**base_config(), "mtaSts": {"mode": "enforce", "serve": "external"}}
    external = render.render(plan.build(from_config(raw)))
    assert render.NGINX_SITE not in external and "mta-sts/example.org/.well-known/mta-sts.txt" in external


def test_rendering_is_deterministic_and_secrets_are_0600(private_key_pem: str) -> None:
    stack = from_config(base_config())
    first = render.render(plan.build(stack), dkim_private_key_pem=private_key_pem)
    second = render.render(plan.build(from_config(copy.deepcopy(base_config()))), dkim_private_key_pem=private_key_pem)
    assert first == second
    assert list(first) == sorted(first)
    key_file = first["opendkim/keys/gw2026.private"]
    assert key_file.mode == 0o600 and key_file.text.strip() == private_key_pem.strip()
    assert all(f.mode == 0o644 for name, f in first.items() if name != "opendkim/keys/gw2026.private")
    assert "opendkim/keys/gw2026.private" not in render.render(plan.build(stack))


def test_a_key_that_is_not_a_private_key_is_refused() -> None:
    with pytest.raises(Exception, match="not an unencrypted PEM private key"):
        render.render(plan.build(from_config(base_config())), dkim_private_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize("path", NO_GATEWAY_STACKS, ids=lambda p: p.stem)
def test_a_gateway_less_stack_is_a_clear_error(path: Path) -> None:
    with pytest.raises(ConfigErrors, match=r"mailstack:gateways: the stack declares no gateway"):
        render.render(plan.build(stackfile.load(path)))


def _mutate(raw: dict[str, Any], dotted: str, value: Any) -> None:
    target: Any = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if value is _DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("gateways.0.ipv4", _DELETE, "mailstack:gateways[0].ipv4: is required"),
        ("gateway.relayHost", "not a host!", "mailstack:gateway.relayHost: 'not a host!' is not a host"),
        ("gateway.relayHost", "smtp.relay.example:99999", "mailstack:gateway.relayHost: 'smtp.relay.example:99999': port"),
        ("dkim.selector", "two.labels", "mailstack:dkim.selector: 'two.labels' is not a single DNS label"),
        ("gateway.tls", {"required": True}, "mailstack:gateway.tls.cert: is required when tls.required is true"),
        ("gateway.odooAddresses", ["0.0.0.0/0"], "mailstack:gateway.odooAddresses[0]: 0.0.0.0/0 is too wide"),
        ("gateway.odooAddresses", ["odoo.example.org"], "mailstack:gateway.odooAddresses[0]: 'odoo.example.org' is not an IP"),
        ("gateway.mailgate", {"url": "ftp://odoo"}, "mailstack:gateway.mailgate.url: 'ftp://odoo' is not an http"),
        ("gateway.mailgate", {"uid": 2, "login": "x"}, "mailstack:gateway.mailgate.uid: give uid or login, not both"),
        ("gateway.smtpAuth", {}, "mailstack:gateway.smtpAuth.user: is required"),
        ("gateway.mailgate", {"concurrency": 0}, "mailstack:gateway.mailgate.concurrency: 0 is not between 1 and 100"),
        ("gateway.mailgate", {"concurrency": 101}, "mailstack:gateway.mailgate.concurrency: 101 is not between 1 and 100"),
        ("gateway.mailgate", {"concurrency": "eight"}, "mailstack:gateway.mailgate.concurrency: 'eight' is not an integer"),
        ("gateway.mailgate", {"delivery": "smtp"}, "mailstack:gateway.mailgate.delivery: 'smtp' is not one of lmtp, pipe"),
        ("gateway.mailgate", {"delivery": ["lmtp"]}, "mailstack:gateway.mailgate.delivery: "),
        ("gateway.colour", "blue", "mailstack:gateway.colour: unknown key"),
    ],
)
def test_bad_input_names_the_key(dotted: str, value: Any, message: str) -> None:
    raw = base_config()
    _mutate(raw, dotted, value)
    with pytest.raises(ConfigErrors) as caught:
        from_config(raw)
    assert any(str(error).startswith(message) for error in caught.value.errors), str(caught.value)


def test_gateway_settings_without_gateways_are_refused() -> None:
    raw = base_config()
    raw.update(outbound=["mailjet"], inbound={"mode": "none"}, gateways=[])
    del raw["mtaSts"]
    with pytest.raises(ConfigErrors, match=r"mailstack:gateway: configures the own gateways, but mailstack:gateways is empty"):
        from_config(raw)


def test_errors_are_collected_with_the_others() -> None:
    raw = base_config()
    raw["dmarc"] = {"policy": "sometimes"}
    raw["gateway"]["relayHost"] = "-bad-"
    with pytest.raises(ConfigErrors) as caught:
        from_config(raw)
    paths = {error.path for error in caught.value.errors}
    assert ("dmarc", "policy") in paths and ("gateway", "relayHost") in paths


def test_cli_render_writes_modes_and_prints_paths(tmp_path: Path, private_key_pem: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text(private_key_pem)
    out = tmp_path / "out"
    assert cli.main(["render", "--stack", "onpremise", "--out", str(out), "--dkim-private-key", str(key)]) == 0
    printed = capsys.readouterr().out.splitlines()
    stack = stackfile.load(project.stack_path("onpremise"))
    expected = render.render(plan.build(stack), dkim_private_key_pem=private_key_pem, gateway=stack.gateways[1])
    assert len(printed) == 2 * len(expected)
    host = out / "mx2.example.net"
    for relative, rendered in expected.items():
        path = host / relative
        assert path.read_bytes() == rendered.text.encode()
        assert stat.S_IMODE(path.stat().st_mode) == rendered.mode
        assert f"{rendered.mode:04o} {path}" in printed
    assert stat.S_IMODE((host / "opendkim/keys/odoo2026.private").stat().st_mode) == 0o600


def test_cli_render_of_a_gateway_less_stack_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["render", "--stack", "online", "--out", str(out)]) == 2
    assert "mailstack:gateways: the stack declares no gateway" in capsys.readouterr().err
    assert not out.exists()


def test_cli_render_with_a_bad_key_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("not a key")
    out = tmp_path / "out"
    assert cli.main(["render", "--stack", "onpremise", "--out", str(out), "--dkim-private-key", str(key)]) == 2
    assert not out.exists()


_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    # RFC 5321 dot-strings: no leading, trailing or double dot.
    aliases=st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,6}(?:\.[a-z0-9_-]{1,4})?", fullmatch=True), max_size=6, unique=True),
    alias_domains=st.lists(_LABEL.map(lambda label: f"{label}.example"), max_size=3, unique=True),
    accept_all=st.booleans(),
)
def test_recipients_and_transport_follow_the_declaration(aliases: list[str], alias_domains: list[str], accept_all: bool) -> None:
    raw = base_config()
    raw["aliasDomains"] = alias_domains
    raw["inbound"] = {"mode": "gateway", "aliases": aliases, "acceptAll": accept_all}
    stack = from_config(raw)
    files = render.render(plan.build(stack))
    assert files == render.render(plan.build(stack))
    domains = sorted({"example.org", *alias_domains})
    transport = [line for line in files["postfix/transport"].text.splitlines() if not line.startswith("#")]
    assert transport == [f"{domain}\todoo:inet:127.0.0.1:10028" for domain in domains]
    if accept_all:
        assert "postfix/relay_recipients" not in files
        return
    listed = {line.split("\t")[0] for line in files["postfix/relay_recipients"].text.splitlines() if not line.startswith("#")}
    locals_ = {"bounce", "catchall", "postmaster", "abuse", *(a.lower() for a in aliases)}
    assert listed == {f"{local}@{domain}" for local in locals_ for domain in domains}


@given(
    host=st.one_of(
        st.lists(_LABEL, min_size=2, max_size=4).map(".".join),
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
    ),
    port=st.integers(1, 65535),
)
def test_relay_host_round_trips_through_its_postfix_form(host: str, port: int) -> None:
    parsed = parse_relay_host(f"[{host}]:{port}")
    assert parsed.port == port
    assert parse_relay_host(parsed.postfix) == parsed


def test_render_out_on_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out`` naming an existing file: exit 2 naming --out, nothing written, no traceback."""
    target = tmp_path / "not-a-dir"
    target.write_text("keep me")
    assert cli.main(["render", "--stack", "onpremise", "--out", str(target)]) == 2
    assert f"--out {target}: is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    below = target / "sub"
    assert cli.main(["render", "--stack", "onpremise", "--out", str(below)]) == 2
    assert "cannot hold a directory" in capsys.readouterr().err


def test_odoo_submits_on_587_only_with_its_senders_checked_before_signing() -> None:
    files = render.render(plan.build(from_config(base_config())))
    master = files["postfix/master.cf"].text
    submission = master.split("\nsubmission ", 1)[1].split("\npickup", 1)[0]
    assert "-o smtpd_sender_restrictions=check_sender_access,regexp:${config_directory}/submission_senders" in submission
    assert "-o smtpd_milters=inet:127.0.0.1:8891" in submission
    assert "-o cleanup_service_name=submission-cleanup" in submission
    assert "-o header_checks=regexp:${config_directory}/submission_header_checks" in submission
    assert "-o body_checks=regexp:${config_directory}/submission_line_checks" in submission
    assert "-o milter_header_checks=regexp:${config_directory}/submission_milter_checks" in submission
    senders = [line for line in files["postfix/submission_senders"].text.splitlines() if not line.startswith("#")]
    assert senders[0] == "/@(brand\\.example|example\\.org)$/\tOK" and senders[1].startswith("/^/\tREJECT 5.7.1")
    headers = files["postfix/submission_header_checks"].text
    assert "/^.{999}/m\tREJECT 5.6.0" in headers and "@(brand\\.example|example\\.org)>" in headers
    assert "RequiredHeaders         yes" in files["opendkim/opendkim.conf"].text
    assert "smtp_port = 587\n" in files["odoo/odoo.conf"].text and "smtp_ssl = False\n" in files["odoo/odoo.conf"].text


def _role_stack(mode: str, postmaster: str | None) -> Any:
    from mailstack.config.stack import from_config as read

    inbound: dict[str, Any] = {"mode": mode, "aliases": ["sales"], **({"postmaster": postmaster} if postmaster else {})}
    hosting = {"hosting": "online", "database": "acme"} if mode == "forward" else {"hosting": "onpremise", "url": "https://odoo.acme.test", "database": "acme"}
    return plan.build(read({
        "domain": "acme.test", "aliasDomains": ["brand.test"], "odoo": hosting, "outbound": ["gateway"], "inbound": inbound,
        "gateways": [{"hostname": "mx1.acme.test", "ipv4": "192.0.2.10"}],
    }))


def test_postmaster_and_abuse_routed_to_the_declared_mailbox() -> None:
    """inbound.postmaster: a virtual alias for postmaster@/abuse@ of every relay domain
    (gateway mode), or the first lines of the redirect map (forward mode); without it,
    no virtual alias at all and both are accepted and handed to Odoo."""
    files = render.render(_role_stack("gateway", "it-ops@example.org"))
    assert files["postfix/role_addresses"].text.splitlines()[3:] == [
        "postmaster@acme.test\tit-ops@example.org", "abuse@acme.test\tit-ops@example.org",
        "postmaster@brand.test\tit-ops@example.org", "abuse@brand.test\tit-ops@example.org",
    ]
    assert "virtual_alias_maps = hash:${config_directory}/role_addresses" in files["postfix/main.cf"].text
    assert "postfix/role_addresses" in render.POSTMAP_FILES
    plain = render.render(_role_stack("gateway", None))
    assert "postfix/role_addresses" not in plain and "virtual_alias_maps" not in plain["postfix/main.cf"].text.replace("not a virtual alias", "")
    assert {"postmaster@acme.test", "abuse@acme.test"} <= set(render.accepted_recipients(_role_stack("gateway", None)))
    forward = render.render(_role_stack("forward", "it-ops@example.org"))["postfix/odoo_redirect"].text.splitlines()
    first = forward.index("/^(postmaster|abuse)@acme\\.test$/\tit-ops@example.org")
    assert first < forward.index("/^(.+)@acme\\.test$/\t${1}@acme.odoo.com")
