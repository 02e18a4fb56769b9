"""The lab's rules without servers: preflight messages, topology, state directory,
DMARC alignment, the e2e gate; and the provisioning loop against a real BIND."""

from __future__ import annotations

import base64
import dataclasses
import os
import random
from pathlib import Path

import dns.resolver
import pytest

from mailstack import plan as planning
from mailstack.checks.dns.resolver import Resolver
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.groups.e2e import inbound_bcc, outbound_dkim
from mailstack.checks.probes.e2e import E2eSettings
from mailstack.config import stackfile
from mailstack.core.errors import MailstackError, ProviderError
from mailstack.core.model import Gateway
from mailstack.lab import binaries, control, netns, provision
from mailstack.lab.bind import BindServer
from mailstack.lab.state import LabState
from mailstack.lab.topology import from_stack
from mailstack.rfc2136.sync import ConflictError
from mailstack.rules import dmarc
from tests import project
from tests.ports import free_port
from tests.servers import require_binary, require_root

LAB = project.stack_path("lab")


def test_preflight_says_root_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(control.LabUnavailable, match="needs root"):
        control.preflight()


def test_preflight_names_the_missing_package_and_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(binaries, "find", lambda name: None if name in ("opendkim-testmsg", "named") else f"/usr/bin/{name}")
    with pytest.raises(control.LabUnavailable) as caught:
        control.preflight()
    assert "bind9, opendkim-tools" in str(caught.value)
    assert "apt-get install -y --no-install-recommends bind9 opendkim-tools" in str(caught.value)


def test_topology_comes_from_the_lab_stack_and_stays_on_loopback() -> None:
    stack = stackfile.load(LAB)
    topology = from_stack(stack)
    assert topology.addresses == {"bind": "127.0.40.2", "gateway": "127.0.40.10", "odoo": "127.0.40.20", "recipient": "127.0.40.30"}
    assert topology.reverse_zones == ("40.0.127.in-addr.arpa",)
    public = dataclasses.replace(stack, gateways=(Gateway("mx1.acme.test", "192.0.2.10"),))
    with pytest.raises(MailstackError, match="loopback only"):
        from_stack(public)
    cloudflare = stackfile.load(project.stack_path("onpremise"))
    with pytest.raises(MailstackError, match="RFC 2136"):
        from_stack(cloudflare)


def test_state_dir_below_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MailstackError, match="writable by others"):
        control.check_state_dir(Path("/tmp") / "lab")
    control.check_state_dir(Path("/var/lib/mailstack-lab"))


def test_secrets_are_created_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "state"
    state = LabState(root)
    state.prepare()
    secret = state.tsig_secret()
    assert base64.b64decode(secret) and state.tsig_secret() == secret, "generated once"
    pem = state.dkim_private_key("lab", 2048)
    assert "PRIVATE KEY" in pem and state.dkim_private_key("lab", 2048) == pem
    assert state.odoo_password()
    for path in (root / "tsig.secret", root / "dkim" / "lab.private", root / "odoo.password", root / "dkim"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_dmarc_alignment_strict_relaxed_and_organizational_domain() -> None:
    assert dmarc.organizational_domain("mail.acme.test") == "acme.test"
    assert dmarc.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert dmarc.aligned("mail.acme.test", "acme.test", "r")
    assert not dmarc.aligned("mail.acme.test", "acme.test", "s")
    assert not dmarc.aligned("a.co.uk", "b.co.uk", "r"), "a public suffix is no organization"
    record = "v=DMARC1; p=reject; adkim=s; aspf=s"
    verdict = dmarc.evaluate("acme.test", record, spf_result="pass", spf_domain="bounce.acme.test", dkim_domains=["acme.test"])
    assert (verdict.result, verdict.spf_aligned, verdict.dkim_aligned) == ("pass", False, True)
    failed = dmarc.evaluate("acme.test", record, spf_result="pass", spf_domain="other.test", dkim_domains=["other.test"])
    assert failed.result == "fail" and failed.policy == "reject"
    assert dmarc.evaluate("acme.test", None, spf_result="pass", spf_domain="acme.test", dkim_domains=[]).result == "none"


def test_e2e_checks_skip_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSTACK_E2E", raising=False)
    stack = stackfile.load(LAB)
    ctx = CheckContext(stack.domain, Resolver(), plan=planning.build(stack))
    for check in (outbound_dkim, inbound_bcc):
        [finding] = check(ctx)
        assert finding.status == "skip" and "MAILSTACK_E2E=1" in finding.summary


def test_e2e_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    monkeypatch.setenv("MAILSTACK_E2E", "1")
    monkeypatch.setenv("MAILSTACK_E2E_SUBMIT", "127.0.40.10:587")
    monkeypatch.setenv("MAILSTACK_ODOO_LOGIN", "admin")
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD_FILE", str(password_file))
    monkeypatch.delenv("MAILSTACK_ODOO_PASSWORD", raising=False)
    settings = E2eSettings.from_env()
    assert settings.enabled and settings.submit == ("127.0.40.10", 587)
    assert settings.odoo_password == "s3cret" and "s3cret" not in repr(settings)


def test_provisioning_creates_updates_and_deletes_through_the_provider(tmp_path: Path) -> None:
    """provision.apply is the lab's `pulumi up`: a changed declaration updates in place,
    a record no longer declared is deleted (with allowDelete for mail records), and a
    conflict with a foreign record stops the whole run with nothing written."""
    require_root()
    require_binary("named")
    secret = base64.b64encode(os.urandom(32)).decode()
    address = random.choice([f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")])
    port = free_port(address)
    bind = BindServer(tmp_path / "bind", address, port)
    bind.add_tsig_key("mailstack-lab", "hmac-sha256", secret)
    bind.add_zone("acme.test", extra_lines=['foreign 300 IN TXT "not ours"'], dynamic=True)
    stack = stackfile.load(LAB)
    keys = LabState(tmp_path / "state")
    keys.prepare()
    key = LabState.public_key_pem(keys.dkim_private_key("lab", 2048))
    state_file = tmp_path / "records.json"

    def resolve(name: str, rdtype: str) -> list[str]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [address], port
        try:
            return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []

    with bind:
        wanted = provision.desired(planning.build(stack, key), address, port, "mailstack-lab", secret)
        assert provision.apply(wanted, state_file).counts()["create"] == 5
        assert secret not in state_file.read_text(), "the journal never holds the TSIG secret"
        assert provision.apply(wanted, state_file).counts()["same"] == 5

        changed = dataclasses.replace(stack, dmarc=dataclasses.replace(stack.dmarc, policy="quarantine"))
        wanted = provision.desired(planning.build(changed, key), address, port, "mailstack-lab", secret)
        decided = provision.apply(wanted, state_file)
        assert (decided.counts()["update"], decided.counts()["same"]) == (1, 4)
        assert "p=quarantine" in resolve("_dmarc.acme.test", "TXT")[0]

        fewer = {**wanted, "records": [r for r in wanted["records"] if r["name"] != "_dmarc.acme.test"]}
        with pytest.raises(ConflictError, match="allowDelete"):
            provision.apply(fewer, state_file)
        assert provision.apply({**fewer, "allowDelete": True}, state_file).counts()["delete"] == 1
        assert resolve("_dmarc.acme.test", "TXT") == []
        assert resolve("foreign.acme.test", "TXT") == ['"not ours"']

        clash = {**fewer, "records": [*fewer["records"], {"zone": "acme.test", "name": "foreign.acme.test", "type": "CNAME", "ttl": 300, "value": "x.example."},
                                       {"zone": "acme.test", "name": "new.acme.test", "type": "TXT", "ttl": 300, "value": '"new"'}]}
        with pytest.raises(ConflictError, match="foreign.acme.test holds TXT 'not ours'"):
            provision.apply(clash, state_file)
        assert resolve("foreign.acme.test", "TXT") == ['"not ours"'] and resolve("new.acme.test", "TXT") == []
        served = provision.live(state_file, wanted)
        assert len(served) == 4 and all(ok for _, ok in served)
