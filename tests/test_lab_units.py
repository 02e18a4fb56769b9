"""The lab's rules without servers: preflight messages, the topology and its address
mapping, the translated stack, the zones, the state directory, the receiver's verdict
headers, the e2e gate; and the provisioning loop against a real BIND."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import random
import time
from pathlib import Path

import dns.resolver
import pytest

from mailstack import plan as planning
from mailstack.checks.dns.resolver import Resolver
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.groups.e2e import outbound_gateway
from mailstack.checks.groups.e2e_inbound import targets
from mailstack.checks.probes.e2e import E2eSettings, endpoint
from mailstack.checks.probes.verdicts import DkimResult, Verdict, disagreements, envelope, parse_received_spf, receiver_verdict
from mailstack.config import stackfile
from mailstack.core.errors import MailstackError
from mailstack.core.model import SenderKind
from mailstack.lab import binaries, control, netns, provision, rotation, thirdparty, translate, zones
from mailstack.lab.bind import BindServer
from mailstack.lab.state import LabState
from mailstack.lab.topology import build as build_topology
from mailstack.rfc2136.sync import ConflictError
from mailstack.rules import dkim_rotation, dmarc
from mailstack.rules.dkim_rotation import RotationState, decide, when
from tests import project
from tests.ports import free_port
from tests.servers import require_binary, require_root

LAB = project.stack_path("lab")
def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return LabState.public_key_b64(pem)


KEY = _public_key()
LAB_KEYS = {SenderKind.GOOGLE: KEY, SenderKind.MAILJET: KEY}


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


def test_the_lab_stack_keeps_its_loopback_addresses() -> None:
    topology = build_topology(stackfile.load(LAB))
    assert (topology.bind_address, topology.host("mx1.acme.test").ipv4, topology.odoo.ipv4) == ("127.0.40.2", "127.0.40.10", "127.0.40.20")
    assert topology.mapped == ()  # nothing declared needs a stand-in address


def test_declared_addresses_map_onto_the_namespaces_loopback_deterministically() -> None:
    stack = stackfile.load(project.stack_path("onpremise"))
    topology = build_topology(stack)
    mapped = {m.key: (m.declared, m.lab) for m in topology.mapped}
    assert mapped["gateways[0].ipv4"] == ("192.0.2.10", "127.0.50.1")
    assert mapped["gateways[0].ipv6"] == ("2001:db8::10", "fd00:6c61:62:50::1")
    assert mapped["gateways[1].ipv4"] == ("198.51.100.20", "127.0.50.2")
    assert mapped["gateway.odooAddresses[0]"] == ("10.0.0.5", "127.0.50.3")
    assert build_topology(stack) == topology, "the same stack maps the same way"
    for address in topology.addresses:  # every lab address is on loopback or ULA (never routable)
        parsed = ipaddress.ip_address(address)
        assert parsed.is_loopback or parsed in ipaddress.ip_network("fd00:6c61:62::/48"), address
    names = [h.name for h in topology.hosts]
    assert len(names) == len(set(names)) and len(topology.pointers()) == sum(len(h.addresses) for h in topology.hosts)
    # the gateways serve the policy (mtaSts.serve: gateway): the plan's CNAME points at
    # the primary, no policy host of its own
    assert "mta-sts.example.net" not in names and "ns1.lab.test" in names


def test_networks_keep_their_size_and_too_wide_ones_are_refused() -> None:
    stack = stackfile.load(project.stack_path("onpremise-subdomain"))
    topology = build_topology(stack)
    assert topology.lab_value("10.20.0.0/24") == "127.0.70.0/24" and topology.odoo.ipv4 == "127.0.70.1"
    wide = dataclasses.replace(stack, gateway=dataclasses.replace(stack.gateway, odoo_addresses=("10.0.0.0/8",)))
    with pytest.raises(MailstackError, match="up to /16"):
        build_topology(wide)


def test_a_stack_managing_a_zone_the_lab_simulates_is_refused() -> None:
    stack = stackfile.load(LAB)
    odoo = dataclasses.replace(stack, domain="odoo.com", dns=dataclasses.replace(stack.dns, zone="odoo.com"))
    with pytest.raises(MailstackError, match="serves odoo.com itself"):
        build_topology(odoo)


def test_the_lab_plans_the_declaration_with_its_own_addresses_and_keys() -> None:
    stack = stackfile.load(project.stack_path("onpremise-m365"))
    topology = build_topology(stack)
    lab = translate.lab_stack(stack, topology, LAB_KEYS)
    assert lab.dns.provider == "rfc2136" and lab.dns.server == topology.bind_address
    assert lab.odoo.url == f"http://{topology.odoo.ipv4}:8069"
    google = lab.sender(SenderKind.GOOGLE)
    assert google and google.dkim_key == KEY  # the declared key is replaced, and said so
    assert any(n.startswith("google: the declared DKIM public key is replaced") for n in translate.substitutions(stack))
    records = {(r.name, r.type): r.content for r in planning.build(lab).records}
    assert records[("google._domainkey.contoso.example", "TXT")].endswith(f"p={KEY}")
    onpremise = stackfile.load(project.stack_path("onpremise"))
    plan = planning.build(translate.lab_stack(onpremise, build_topology(onpremise), {}), KEY)
    found = {(r.name, r.type): r.content for r in plan.records}
    assert found[("example.net", "TXT")] == "v=spf1 ip4:127.0.50.1 ip6:fd00:6c61:62:50::1 ip4:127.0.50.2 ~all"
    assert found[("mx1.example.net", "AAAA")] == "fd00:6c61:62:50::1"
    assert plan.stack.gateway and plan.stack.gateway.odoo_addresses == ("127.0.50.3",)


def test_every_lab_host_has_an_address_record_and_a_pointer_in_some_zone() -> None:
    for path in project.all_stacks():
        stack = stackfile.load(path)
        topology = build_topology(stack)
        plan = planning.build(translate.lab_stack(stack, topology, LAB_KEYS), KEY)
        keys = {kind: KEY for kind in thirdparty.SIGNING_KINDS}
        zone_set = zones.build(plan, topology, thirdparty.records(plan, topology, keys))
        served = [*plan.records, *(r for z in (*zone_set.dynamic.values(), *zone_set.static.values()) for r in z)]
        pointers = {r.name: r.content for z in zone_set.reverse.values() for r in z}
        for host in topology.hosts:
            for address in host.addresses:
                rdtype = "AAAA" if ":" in address else "A"
                assert any(r.name == host.name and r.type == rdtype and r.content == address for r in served), (path.name, host.name)
                assert pointers[ipaddress.ip_address(address).reverse_pointer] == host.name


def test_third_parties_are_published_in_their_real_shapes() -> None:
    stack = stackfile.load(project.stack_path("onpremise-m365"))
    topology = build_topology(stack)
    plan = planning.build(translate.lab_stack(stack, topology, LAB_KEYS))
    records = {(r.name, r.type): r.content for r in thirdparty.records(plan, topology, {k: KEY for k in thirdparty.SIGNING_KINDS})}
    office = topology.host("smtp.office365.com").ipv4
    assert records[("spf.protection.outlook.com", "TXT")] == f"v=spf1 ip4:{office} -all"
    assert records[("selector1-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft", "TXT")] == f"v=DKIM1; k=rsa; p={KEY}"
    assert ("_spf.google.com", "TXT") in records
    online = stackfile.load(project.stack_path("online"))
    topology = build_topology(online)
    plan = planning.build(translate.lab_stack(online, topology, {}), KEY)
    records = {(r.name, r.type): r.content for r in thirdparty.records(plan, topology, {k: KEY for k in thirdparty.SIGNING_KINDS})}
    assert records[("odoo._domainkey.odoo.com", "TXT")] == f"v=DKIM1; k=rsa; p={KEY}"
    assert records[("examplecorp.odoo.com", "TXT")] == "v=spf1 include:_spf.odoo.com -all"
    relays = {r.id: r for r in thirdparty.relays(online, topology, {SenderKind.ODOO: "/key"})}
    assert relays["odoo"].selector == "odoo" and relays["odoo"].key_file == "/key"


def test_state_dir_below_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MailstackError, match="writable by others"):
        control.check_state_dir(Path("/tmp") / "lab")
    control.check_state_dir(Path("/var/lib/mailstack-lab"))


def test_state_dir_too_long_for_unix_sockets_is_refused() -> None:
    with pytest.raises(MailstackError, match="at most 45 characters"):
        control.check_state_dir(Path("/var/lib") / ("x" * 40))


def test_secrets_are_created_owner_only_per_stack(tmp_path: Path) -> None:
    state = LabState(tmp_path / "state", stack_file=str(LAB))
    state.prepare()
    secret = state.tsig_secret()
    assert base64.b64decode(secret) and state.tsig_secret() == secret, "generated once"
    pem = state.dkim_private_key("lab", 2048)
    assert "PRIVATE KEY" in pem and state.dkim_private_key("lab", 2048) == pem
    assert state.odoo_password() and state.authority().cert_pem.startswith(b"-----BEGIN CERTIFICATE")
    secrets = state.stack_root / "secrets"
    for path in (secrets / "tsig.secret", secrets / "dkim-lab.private", secrets / "odoo.password", secrets / "ca.key", secrets):
        assert path.stat().st_mode & 0o077 == 0, path
    other = LabState(tmp_path / "state", stack_file=str(project.stack_path("onpremise")))
    assert other.stack_root != state.stack_root and other.stack_root.parent == state.stack_root.parent


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
    from mailstack.checks.engine import registry

    registry.load_builtin()
    for check_id in ("e2e.outbound.gateway", "e2e.outbound.odoo", "e2e.inbound.gateway.bcc", "e2e.inbound.imap.to"):
        [finding] = registry.get(check_id).function(ctx)
        assert finding.status == "skip" and "MAILSTACK_E2E=1" in finding.summary


def test_e2e_without_a_receiving_mailbox_is_an_error_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAILSTACK_E2E_RECIPIENT", "MAILSTACK_E2E_MAILDIR", "MAILSTACK_E2E_AUTHSERV_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILSTACK_E2E", "1")
    stack = stackfile.load(LAB)
    [finding] = outbound_gateway(CheckContext(stack.domain, Resolver(), plan=planning.build(stack)))
    assert finding.status == "error" and "MAILSTACK_E2E_MAILDIR" in finding.summary


def test_e2e_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    parties = tmp_path / "parties.json"
    parties.write_text('{"odoo": [{"submit": "127.0.60.5:587", "note": "lab"}], "spf-1": [{"submit": "[fd00:6c61:62:50::1]:587"}]}')
    monkeypatch.setenv("MAILSTACK_E2E", "1")
    monkeypatch.setenv("MAILSTACK_E2E_SUBMIT", "127.0.40.10:587,[fd00::1]:2525")
    monkeypatch.setenv("MAILSTACK_E2E_THIRD_PARTIES", str(parties))
    monkeypatch.setenv("MAILSTACK_ODOO_LOGIN", "admin")
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD_FILE", str(password_file))
    monkeypatch.delenv("MAILSTACK_ODOO_PASSWORD", raising=False)
    settings = E2eSettings.from_env()
    assert settings.enabled and settings.submit == (("127.0.40.10", 587), ("fd00::1", 2525))
    assert settings.third_parties["odoo"][0].submit == ("127.0.60.5", 587) and settings.third_parties["spf-1"][0].submit == ("fd00:6c61:62:50::1", 587)
    assert settings.odoo_password == "s3cret" and "s3cret" not in repr(settings)
    assert endpoint("mx.example.net") == ("mx.example.net", 25) and endpoint("2001:db8::1") == ("2001:db8::1", 25)


def test_inbound_targets_are_the_aliases_or_the_probe_alias_where_any_address_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSTACK_E2E_ALIAS", "probe")
    lab = stackfile.load(LAB)
    assert targets(CheckContext(lab.domain, Resolver(), plan=planning.build(lab)), "gateway") == ["sales@acme.test", "support@acme.test"]
    online = stackfile.load(project.stack_path("online"))
    assert targets(CheckContext(online.domain, Resolver(), plan=planning.build(online)), "odoo") == ["probe@mail.example.com"]


#: Headers as the lab's receiver writes them (Postfix virtual, OpenDMARC, OpenDKIM,
#: policyd-spf, Postfix), over a forged set that arrived with the message.
DELIVERED = (
    b"Return-Path: <bounce@acme.test>\n"
    b"X-Original-To: probe@recipient.test\n"
    b"Delivered-To: probe@recipient.test\n"
    b"DMARC-Filter: OpenDMARC Filter v1.4.2 mx.recipient.test 32B0651E38C\n"
    b"Authentication-Results: mx.recipient.test; dmarc=pass (p=reject dis=none) header.from=acme.test\n"
    b"Authentication-Results: mx.recipient.test;\n\tdkim=pass (2048-bit key; unprotected) header.d=acme.test header.i=@acme.test header.a=rsa-sha256 header.s=lab header.b=BktaCDmd;\n\tdkim-atps=neutral\n"
    b"Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=127.0.40.10; helo=mx1.acme.test; envelope-from=bounce@acme.test; receiver=mx.recipient.test \n"
    b"Received: from mx1.acme.test (mx1.acme.test [127.0.40.10])\n\tby mx.recipient.test (Postfix) with ESMTPS id 32B0651E38C\n"
    b"Received-SPF: Fail (forged below the receiver's Received)\n"
    b"Authentication-Results: mx.recipient.test; dmarc=fail header.from=acme.test\n"
    b"From: notifications@acme.test\nSubject: x\n\nbody\n"
)


def test_the_receivers_verdict_is_read_from_its_own_headers_only() -> None:
    verdict = receiver_verdict(DELIVERED, "mx.recipient.test")
    assert (verdict.spf, verdict.spf_domain, verdict.dmarc, verdict.dmarc_from) == ("pass", "acme.test", "pass", "acme.test")
    assert verdict.dkim_passes("acme.test") and verdict.dkim[0].selector == "lab" and not verdict.notes
    other = receiver_verdict(DELIVERED, "mx.elsewhere.test")
    assert other.dmarc is None and other.dkim == () and other.notes, "another authserv-id's results are not ours"
    seen = envelope(DELIVERED, "mx.recipient.test")
    assert (seen.client_ip, seen.helo, seen.mail_from) == ("127.0.40.10", "mx1.acme.test", "bounce@acme.test")
    assert parse_received_spf("Fail (mailfrom) identity=mailfrom; client-ip=fd00::1; envelope-from=a@b.test")["client-ip"] == "fd00::1"


def test_the_receiver_and_the_second_opinion_disagreeing_is_named() -> None:
    """A disagreement fails the e2e finding (``checks.groups.e2e.judge`` adds each to
    its problems): every result the two judges give is compared, none hidden."""
    receiver = receiver_verdict(DELIVERED, "mx.recipient.test")
    same = Verdict("dkimpy/pyspf", "pass", "acme.test", (DkimResult("pass", "acme.test", "lab"),), "pass", "acme.test")
    assert disagreements(receiver, same) == []
    other = dataclasses.replace(same, spf="softfail", dkim=(DkimResult("fail", "acme.test", "lab"), DkimResult("pass", "relay.test", "s")),
                                dmarc="fail")
    found = disagreements(receiver, other)
    assert [line.split(":")[0] for line in found] == ["SPF", "DKIM d=acme.test", "DKIM d=relay.test", "DMARC"], found
    assert "receiver mx.recipient.test pass, dkimpy/pyspf softfail" in found[0]


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
    keys = LabState(tmp_path / "state", stack_file=str(LAB))
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


def test_a_seeded_real_zone_gets_the_same_address_mapping_as_the_stack() -> None:
    """The seed holds the declared (real) addresses; the lab maps them as it maps the
    stack's, so what production would find identical stays identical in the lab."""
    stack = stackfile.load(project.stack_path("onpremise"))
    topology = build_topology(stack)
    seed = "\n".join([
        'example.net. 3600 IN TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ip4:198.51.100.20 ~all"',
        "mx1.example.net. 3600 IN A 192.0.2.10",
        "www.example.net. 3600 IN A 192.0.2.80",
        "odoo.example.net. 3600 IN A 203.0.113.5",
    ])
    text = translate.seed_zone(seed, topology, {("odoo.example.net", "A")})
    assert 'example.net. 3600 IN TXT "v=spf1 ip4:127.0.50.1 ip6:fd00:6c61:62:50::1 ip4:127.0.50.2 ~all"' in text
    assert "mx1.example.net. 3600 IN A 127.0.50.1" in text and "www.example.net. 3600 IN A 192.0.2.80" in text
    assert "odoo.example.net" not in text, "the lab serves its own host there"
    adopting = dataclasses.replace(stack, dns=dataclasses.replace(stack.dns, provider="rfc2136", adopt=(("txt-example.net", "v=spf1 ip4:192.0.2.10 -all"),)))
    assert translate.adopted(adopting, topology) == (("txt-example.net", "v=spf1 ip4:127.0.50.1 -all"),)
    assert translate.adopted(stack, topology) == (), "Cloudflare import ids mean nothing to the lab's BIND"


# -- the lab's DKIM rotation state (mailstack.lab.rotation) --------------------------------


def _rotating(tmp_path: Path, previous: str | None) -> planning.Plan:
    text = project.stack_path("lab").read_text().replace("    selector: lab\n", "    selector: lab2\n" + (f"    previous: {previous}\n" if previous else ""))
    path = tmp_path / "Pulumi.rot.yaml"
    path.write_text(text)
    return planning.build(stackfile.load(path))


def test_the_recorded_rotation_state_is_written_private_and_read_back(tmp_path: Path) -> None:
    planned = _rotating(tmp_path, "lab")
    state = RotationState("lab2", "lab", 1000.0, 2000.0)
    decided = planned.with_rotation(decide(planned.stack.dkim, 300, None, state, 1500.0))
    path = tmp_path / rotation.STATE_FILE
    rotation.record(path, decided)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert rotation.read(path) == state
    assert rotation.recorded_plan(planned, state).signing_selector == "lab2"  # switched: the new key signs
    assert rotation.recorded_plan(planned, RotationState("lab2", "lab")).signing_selector == "lab"
    rotation.record(path, _rotating(tmp_path, None))  # the finished rotation's state goes
    assert not path.exists() and rotation.read(path) is None


def test_a_broken_rotation_state_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / rotation.STATE_FILE
    path.write_text('{"selector": "lab2", "previous": "lab", "switchedAt": "soon"}')
    with pytest.raises(MailstackError, match=rf"{path}: the DKIM rotation state's switchedAt is not a time"):
        rotation.read(path)


def test_dropping_dkim_previous_before_the_retire_time_is_refused_naming_it(tmp_path: Path) -> None:
    retire = time.time() + 3600
    dropped = _rotating(tmp_path, None).stack
    with pytest.raises(MailstackError, match=rf"dkim.previous: lab's record may be deleted only after {when(retire)}"):
        dkim_rotation.refuse_early_retire(dropped, RotationState("lab2", "lab", time.time(), retire), time.time())
    dkim_rotation.refuse_early_retire(dropped, RotationState("lab2", "lab", time.time() - 7200, time.time() - 1), time.time())  # after it: allowed
    dkim_rotation.refuse_early_retire(dropped, None, time.time())
