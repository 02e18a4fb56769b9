"""The Pulumi gateway component under mocks: resources per host, secrets, the DKIM TXT
from the generated key, and triggers that change exactly when rendered content does."""

from __future__ import annotations

import copy
import dataclasses
import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from mailstack import plan
from mailstack.config import stackfile
from mailstack.config.stack import from_config
from mailstack.gateway import render
from mailstack.providers import gateway_commands
from mailstack.providers.gateway import TYPE, GatewayArgs, GatewayServer, content_hash
from mailstack.rules import dkim
from tests import project
from tests.pulumi_harness import Mocks, ProgramRun, config_string, run_program

ONPREMISE = project.stack_path("onpremise")
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
CF_RECORD = "cloudflare:index/dnsRecord:DnsRecord"


def base_values() -> dict[str, Any]:
    return {
        "domain": "example.org",
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.org", "database": "prod"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": ["sales"]},
        "gateways": [
            {"hostname": "mx1.example.org", "ipv4": "192.0.2.10", "ssh": {"user": "deploy", "port": 2222}},
            {"hostname": "mx2.example.org", "ipv4": "192.0.2.20", "priority": 20},
        ],
        "dkim": {"selector": "gw"},
        "dmarc": {"policy": "none"},
        "gateway": {"odooAddresses": ["10.0.0.5"]},
    }


def secret(value: Any) -> Any:
    """The plain value of an input the engine received as a secret; fails otherwise."""
    assert isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig, f"not a secret: {value!r}"
    return value["value"]


def run_values(values: dict[str, Any], secrets: dict[str, str] | None = None) -> ProgramRun:
    config = {f"mailstack:{k}": config_string(v) for k, v in values.items()}
    config.update({f"mailstack:{k}": v for k, v in (secrets or {}).items()})
    return run_program(config=config, secret_keys=[f"mailstack:{k}" for k in (secrets or {})])


def children(run: ProgramRun, host: str, token: str) -> list:
    component = next(r for r in run.resources if r.type == TYPE and r.name == f"gateway-{host}")
    return [r for r in run.of_type(token) if r.parent == component.urn]


def activate_triggers(run: ProgramRun, host: str) -> list:
    return run.named(f"gateway-{host}-activate").inputs["triggers"]


def test_one_component_per_gateway_with_files_key_and_activation() -> None:
    run = run_values(base_values(), {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"})
    assert sorted(r.name for r in run.of_type(TYPE)) == ["gateway-mx1.example.org", "gateway-mx2.example.org"]
    stack = from_config(base_values())
    for gateway in stack.gateways:
        host = gateway.hostname
        expected = render.render(plan.build(stack), gateway=gateway)
        copies = {r.inputs["remotePath"]: r for r in children(run, host, COPY)}
        layout = render.Layout()
        for relative, rendered in expected.items():
            copy_resource = copies[layout.host_path(relative)]
            assert copy_resource.inputs["source"].text == rendered.text
        assert layout.mailgate_command[-1] in copies  # the stdlib-only mailgate script
        assert copies[layout.aliasd_command[-1]].inputs["source"].text == render.aliasd_source()  # and mailstack-aliasd
        assert "/etc/systemd/system/mailstack-aliasd.service" in copies
        # The resident mailgate (delivery: lmtp, the default): its script beside the
        # mailgate's (whose rules it loads) and its unit.
        assert copies[layout.mailgated_command[-1]].inputs["source"].text == render.mailgated_source()
        assert "/etc/systemd/system/mailstack-mailgate.service" in copies
        commands = {r.name.removeprefix(f"gateway-{host}-"): r for r in children(run, host, COMMAND)}
        assert set(commands) == {"packages", "dkim-key", "activate"}
        assert "apt-get install -y -q postfix opendkim" in commands["packages"].inputs["create"]
        activate = commands["activate"].inputs["create"]
        assert "postmap /etc/postfix/transport /etc/postfix/relay_recipients" in activate
        assert "postfix -c /etc/postfix check" in activate and "reload-or-restart postfix" in activate
        assert ("chmod 0755 /usr/local/lib/mailstack/mailgate.py /usr/local/lib/mailstack/aliasd.py "
                "/usr/local/lib/mailstack/mailgated.py") in activate
        assert "systemctl enable opendkim postfix mailstack-aliasd mailstack-mailgate" in activate
        assert activate.index("systemctl restart mailstack-aliasd") < activate.index("reload-or-restart postfix")
        assert activate.index("systemctl restart mailstack-mailgate") < activate.index("reload-or-restart postfix")
        assert "disable --now" not in activate
        key = commands["dkim-key"]
        assert secret(key.inputs["stdin"]) == "(mock private key)"  # the tls.PrivateKey PEM, secret, via stdin
        assert "umask 077" in key.inputs["create"] and "/etc/opendkim/keys/gw.private" in key.inputs["create"]
        assert "(mock private key)" not in key.inputs["create"]  # never on a command line
    mx1 = secret(run.named("gateway-mx1.example.org-activate").inputs["connection"])  # the whole connection
    assert (mx1["host"], mx1["port"], mx1["user"]) == ("192.0.2.10", 2222.0, "deploy")
    assert mx1["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    mx2 = secret(run.named("gateway-mx2.example.org-activate").inputs["connection"])
    assert (mx2["host"], mx2["port"], mx2["user"]) == ("192.0.2.20", 22.0, "root")


def test_odoo_password_secret_is_pushed_through_stdin() -> None:
    run = run_values(base_values(), {"odooPassword": "hunter2-odoo"})
    command = run.named("gateway-mx1.example.org-odoo-password")
    assert secret(command.inputs["stdin"]) == "hunter2-odoo"
    assert "hunter2" not in command.inputs["create"]
    assert "/etc/mailstack/odoo-password" in command.inputs["create"] and "0640" in command.inputs["create"]


def test_smtp_auth_adds_the_sasl_packages() -> None:
    values = base_values()
    values["gateway"]["smtpAuth"] = {"user": "odoo"}
    create = run_values(values).named("gateway-mx1.example.org-packages").inputs["create"]
    assert "libsasl2-modules sasl2-bin" in create
    assert "sasl2-bin" not in run_values(base_values()).named("gateway-mx1.example.org-packages").inputs["create"]


def test_smtp_auth_password_goes_into_the_sasldb_through_stdin() -> None:
    values = base_values()
    values["gateway"]["smtpAuth"] = {"user": "odoo"}
    run = run_values(values, {"smtpAuthPassword": "hunter2-sasl"})
    command = run.named("gateway-mx1.example.org-smtp-auth")
    assert secret(command.inputs["stdin"]) == "hunter2-sasl"
    create = command.inputs["create"]
    assert "hunter2" not in create
    assert "saslpasswd2 -p -c -f /etc/sasldb2 -u mx1.example.org odoo" in create
    assert "chown root:postfix /etc/sasldb2; chmod 0640 /etc/sasldb2" in create
    # Without smtpAuth the secret configures nothing: no sasldb command.
    plain = run_values(base_values(), {"smtpAuthPassword": "hunter2-sasl"})
    assert not [r for r in plain.of_type(COMMAND) if r.name.endswith("-smtp-auth")]


def test_dkim_txt_record_comes_from_the_generated_key() -> None:
    run = run_values(base_values())
    pem = run.public_keys["dkim-gw"]  # one key per selector (alias: the former name "dkim")
    txt = [r for r in run.of_type(CF_RECORD) if r.inputs["name"] == "gw._domainkey.example.org"]
    assert len(txt) == 1
    assert txt[0].inputs["content"].replace('" "', "").strip('"') == dkim.txt_value(pem)


def test_triggers_change_when_and_only_when_rendered_content_changes() -> None:
    base = run_values(base_values())
    same = run_values(copy.deepcopy(base_values()))
    assert activate_triggers(base, "mx1.example.org") == activate_triggers(same, "mx1.example.org")

    unrelated = base_values()
    unrelated["dmarc"] = {"policy": "reject"}  # DNS only: nothing on the host changes
    assert activate_triggers(run_values(unrelated), "mx1.example.org") == activate_triggers(base, "mx1.example.org")

    more_aliases = base_values()
    more_aliases["inbound"]["aliases"] = ["sales", "jobs"]
    changed = run_values(more_aliases)
    assert activate_triggers(changed, "mx1.example.org") != activate_triggers(base, "mx1.example.org")
    before = {r.inputs["remotePath"]: r.inputs["triggers"] for r in children(base, "mx1.example.org", COPY)}
    after = {r.inputs["remotePath"]: r.inputs["triggers"] for r in children(changed, "mx1.example.org", COPY)}
    assert {path for path in before if before[path] != after[path]} == {"/etc/postfix/relay_recipients"}


def test_deploy_false_renders_only() -> None:
    values = base_values()
    values["gateway"]["deploy"] = False
    run = run_values(values)
    assert run.of_type(TYPE) == [] and run.of_type(COMMAND) == []
    assert run.of_type("tls:index/privateKey:PrivateKey")  # the key (and its DNS record) still exist


def test_example_stack_deploys_each_gateway() -> None:
    run = run_program(ONPREMISE)
    assert sorted(r.name for r in run.of_type(TYPE)) == ["gateway-mx1.example.net", "gateway-mx2.example.net"]


def test_the_private_key_stays_secret_in_the_component() -> None:
    """Constructed directly with a plain string: the component still hands the PEM to
    its key command as a secret, and its content hash covers exactly the rendered files."""
    mocks = Mocks()
    pulumi.runtime.reset_options(project="mailstack", stack="unit")
    pulumi.runtime.set_mocks(mocks, project="mailstack", stack="unit")
    stack = from_config(base_values())
    built: dict[str, GatewayServer] = {}

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        built["server"] = GatewayServer("gw", GatewayArgs(plan=plan.build(stack), gateway=stack.gateways[0], dkim_private_key_pem="PEM"))
        return built["server"].activate.urn

    build()
    key = next(r for r in mocks.resources if r.name == "gw-dkim-key")
    assert secret(key.inputs["stdin"]) == "PEM"
    files = render.render(plan.build(stack), gateway=stack.gateways[0])
    mailgate_source = (project.ROOT / "modules" / "gateway" / "mailgate.py").read_text()
    aliasd_source = (project.ROOT / "modules" / "gateway" / "aliasd.py").read_text()
    mailgated_source = (project.ROOT / "modules" / "gateway" / "mailgated.py").read_text()
    assert built["server"].content_hash == content_hash(files, mailgate_source, aliasd_source, mailgated_source)


def test_the_pipe_delivery_deploys_no_resident_mailgate_and_stops_an_earlier_one() -> None:
    values = base_values()
    values["gateway"] = {"mailgate": {"delivery": "pipe"}}
    run = run_values(values)
    copies = {r.inputs["remotePath"] for r in children(run, "mx1.example.org", COPY)}
    assert "/usr/local/lib/mailstack/mailgated.py" not in copies and "/etc/systemd/system/mailstack-mailgate.service" not in copies
    activate = run.named("gateway-mx1.example.org-activate").inputs["create"]
    assert "systemctl restart mailstack-mailgate" not in activate
    stop = "if systemctl cat mailstack-mailgate >/dev/null 2>&1; then systemctl disable --now mailstack-mailgate; fi"
    assert activate.index("reload-or-restart postfix") < activate.index(stop)  # Postfix pipes first


def test_forward_mode_installs_postsrsd_and_redirects_to_odoo() -> None:
    values = base_values()
    values["odoo"] = {"hosting": "online", "database": "acme"}
    values["inbound"] = {"mode": "forward", "aliases": ["sales"]}
    values["outbound"] = ["odoo"]
    values["gateway"] = {"mailgate": {"login": "admin"}}
    run = run_values(values)
    assert "postsrsd" in run.named("gateway-mx1.example.org-packages").inputs["create"]
    activate = run.named("gateway-mx1.example.org-activate").inputs["create"]
    assert "systemctl restart postsrsd" in activate and "postmap /etc/postfix/relay_recipients" in activate
    copies = {r.inputs["remotePath"]: r.inputs["source"].text for r in children(run, "mx1.example.org", COPY)}
    assert "SRS_DOMAIN=example.org" in copies["/etc/default/postsrsd"]
    assert "/^(.+)@example\\.org$/\t${1}@acme.odoo.com" in copies["/etc/postfix/odoo_redirect"]
    assert "/etc/postfix/transport" not in copies  # no mailgate: Odoo Online receives it


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcKJUNUTddQpyK9d4LbK+fW+JXMpCEeYewqQxses4Ti"


def test_the_host_key_is_pinned_when_declared() -> None:
    values = base_values()
    values["gateways"][0]["ssh"]["hostKey"] = HOST_KEY + " root@mx1"
    run = run_values(values)
    assert secret(run.named("gateway-mx1.example.org-packages").inputs["connection"])["hostKey"] == HOST_KEY
    assert "hostKey" not in secret(run.named("gateway-mx2.example.org-packages").inputs["connection"])


def test_packages_fail_on_an_unreachable_mirror_and_make_every_target_directory() -> None:
    run = run_values(base_values())
    create = run.named("gateway-mx1.example.org-packages").inputs["create"]
    assert "apt-get update -q --error-on=any;" in create  # plain apt-get update exits 0 without its mirror
    parents = {r.inputs["remotePath"].rsplit("/", 1)[0] for r in children(run, "mx1.example.org", COPY)}
    assert {"/etc/mailstack/odoo", "/etc/systemd/system/opendkim.service.d", "/usr/local/lib/mailstack"} <= parents
    made = create.split("umask 022; mkdir -p ", 1)[1].split(";", 1)[0].split()
    assert sorted(parents) == made


def test_secrets_are_replaced_delete_first_and_their_delete_removes_them() -> None:
    """Created first, the old resource's delete would remove the file just written to
    the same path (a new secret, or pulumi up --replace)."""
    values = base_values()
    values["gateway"]["smtpAuth"] = {"user": "odoo"}
    run = run_values(values, {"odooPassword": "hunter2-odoo", "smtpAuthPassword": "hunter2-sasl"})
    key = run.named("gateway-mx1.example.org-dkim-key")
    password = run.named("gateway-mx1.example.org-odoo-password")
    sasl = run.named("gateway-mx1.example.org-smtp-auth")
    assert key.delete_before_replace and password.delete_before_replace and sasl.delete_before_replace
    assert key.inputs["delete"] == "rm -f /etc/opendkim/keys/gw.private"
    assert password.inputs["delete"] == "rm -f /etc/mailstack/odoo-password"
    # A new selector moves the key (an update; activation removes the old selector's key),
    # a new password file path replaces the password.
    assert "/etc/opendkim/keys/gw.private" not in str(key.inputs["triggers"])
    assert "/etc/mailstack/odoo-password" in str(password.inputs["triggers"])
    assert "odoo" in str(sasl.inputs["triggers"]) and "mx1.example.org" in str(sasl.inputs["triggers"])
    # The key directory keeps the packages step's 0750: made only when missing.
    assert "test -d /etc/opendkim/keys || install -d -m 0755 /etc/opendkim/keys;" in key.inputs["create"]


def test_activation_checks_the_certificate_reports_postfix_check_and_revives_the_instance() -> None:
    create = run_values(base_values()).named("gateway-mx1.example.org-activate").inputs["create"]
    assert "test -r /etc/ssl/certs/ssl-cert-snakeoil.pem || { echo 'mailstack: /etc/ssl/certs/ssl-cert-snakeoil.pem " \
           "(mailstack:gateway.tls.cert) is missing on this host" in create
    assert "script -qefc 'postfix -c /etc/postfix check' /dev/null >&2" in create  # stderr only on a terminal
    assert create.index("postfix -c /etc/postfix check") < create.index("systemctl restart opendkim")
    assert "systemctl reload-or-restart postfix postfix@-;" in create
    assert create.rstrip().endswith("grep -qF -- \":$key\" /etc/opendkim/KeyTable || rm -f -- \"$key\"; done")


# -- hostile paths: every value in a remote command is one shell word ------------------

#: Paths mailgate.conf (INI) can hold but a shell would run: only quoting stops them.
SHELL_HOSTILE = ["/etc/x;touch${IFS}/tmp/owned", "/etc/x`id>/tmp/owned`", "/etc/$(id)/it's"]


def _component(password_file: str) -> list[Any]:
    """The component's resources for a stack whose mailgate password file is
    ``password_file``, the model built directly (as a future key could)."""
    stack = from_config(base_values())
    assert stack.gateway is not None
    settings = dataclasses.replace(stack.gateway, mailgate=dataclasses.replace(stack.gateway.mailgate, password_file=password_file))
    stack = dataclasses.replace(stack, gateway=settings)
    mocks = Mocks()
    pulumi.runtime.reset_options(project="mailstack", stack="unit")
    pulumi.runtime.set_mocks(mocks, project="mailstack", stack="unit")

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        server = GatewayServer("gw", GatewayArgs(plan=plan.build(stack), gateway=stack.gateways[0], dkim_private_key_pem="PEM", odoo_password="pw"))
        return server.activate.urn

    build()
    return mocks.resources


def test_hostile_password_file_paths_are_quoted_exactly() -> None:
    resources = {r.name: r for r in _component("/etc/x;touch${IFS}/tmp/owned")}
    assert resources["gw-odoo-password"].inputs["create"] == (
        "set -eu; umask 077; test -d '/etc/x;touch${IFS}/tmp' || install -d -m 0755 '/etc/x;touch${IFS}/tmp'; "
        "cat > '/etc/x;touch${IFS}/tmp/owned.mailstack-new'; "
        "chown root:mailgate '/etc/x;touch${IFS}/tmp/owned.mailstack-new'; "
        "chmod 0640 '/etc/x;touch${IFS}/tmp/owned.mailstack-new'; "
        "mv -f '/etc/x;touch${IFS}/tmp/owned.mailstack-new' '/etc/x;touch${IFS}/tmp/owned'"
    )
    assert resources["gw-odoo-password"].inputs["delete"] == "rm -f '/etc/x;touch${IFS}/tmp/owned'"
    quoted = {r.name: r for r in _component("/etc/$(id)/it's")}["gw-odoo-password"].inputs["create"]
    assert quoted.startswith("set -eu; umask 077; test -d '/etc/$(id)' || install -d -m 0755 '/etc/$(id)'; "
                             "cat > '/etc/$(id)/it'\"'\"'s.mailstack-new';")


@pytest.mark.parametrize("hostile", SHELL_HOSTILE)
def test_a_real_shell_writes_the_secret_at_the_exact_hostile_path(hostile: str, tmp_path: Path) -> None:
    """The command the component sends, run by dash: the secret lands at the path
    as written, byte for byte, mode 0640, and nothing in the path runs."""
    marker = tmp_path / "owned"
    path = str(tmp_path) + hostile.replace("/tmp/owned", str(marker))
    command = gateway_commands.write_secret(path, "root", "root", "0640", str(Path(path).parent))
    result = subprocess.run(["/bin/sh", "-c", command], input="the-secret\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    written = Path(path)
    assert written.read_text() == "the-secret\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o640
    assert not marker.exists(), "a command hidden in the path ran"
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]
