"""DKIM rotation without a gap (issue 15, part 7): the one rule's phases, the stack keys,
the plan's records and signing selector, the rendered OpenDKIM tables, the Pulumi
program under mocks for each phase, and the ``DkimRotation`` provider's guard.

The live proof (real BIND, Postfix/OpenDKIM signing, the lab's receiver verifying) is
tests/test_dkim_rotation_live.py."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors
from mailstack.core.model import Dkim
from mailstack.core.record import Record
from mailstack.gateway import render
from mailstack.providers import dkim_rotation as provider
from mailstack.rules import dkim
from mailstack.rules import dkim_rotation as rule
from mailstack.rules.dkim_rotation import Observation, Phase, RotationState, ServerView
from tests.pulumi_harness import PRIVATE_KEY_TOKEN, Mocks, ProgramRun, config_string, private_pem, public_pem, run_program

CF_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
ROTATION_TOKEN = "pulumi-python:dynamic:Resource"
T0 = 1_800_000_000.0
TTL = 300
MARGIN = 600
DKIM = Dkim("new", previous="old", retire_margin=MARGIN)

EVERYWHERE = Observation((ServerView("ns1"), ServerView("ns2", old_published=("old._domainkey.example.org",), old_ttl=900)))
LACKING = Observation((ServerView("ns1"), ServerView("ns2", missing_new=("new._domainkey.example.org",))))


# --- the rule ---------------------------------------------------------------------------------


def test_without_previous_the_phase_is_steady_and_signs_with_the_selector() -> None:
    decided = rule.decide(Dkim("s1"), TTL, None, None, T0)
    assert (decided.phase, decided.signing, decided.published, decided.state) == (Phase.STEADY, "s1", ("s1",), None)


def test_publish_keeps_signing_with_the_previous_key_until_every_server_serves_the_new_one() -> None:
    for observed in (None, LACKING, Observation((ServerView("ns1"), ServerView("ns2", error="timeout")))):
        decided = rule.decide(DKIM, TTL, observed, None, T0)
        assert decided.phase is Phase.PUBLISH and decided.signing == "old" and decided.published == ("old", "new")
        assert decided.state == RotationState("new", "old") and decided.retire_at is None
    assert "ns2" in rule.decide(DKIM, TTL, LACKING, None, T0).next


def test_switch_records_its_time_once_and_retire_waits_for_the_longest_ttl_plus_the_margin() -> None:
    switched = rule.decide(DKIM, TTL, EVERYWHERE, None, T0)
    assert switched.phase is Phase.SWITCH and switched.signing == "new" and switched.published == ("old", "new")
    # The old record's live TTL (900) is longer than the planned one: it counts.
    assert switched.state == RotationState("new", "old", T0, T0 + 900 + MARGIN)
    assert switched.switches_now and "this apply switches signing from old to new" in switched.next
    later = rule.decide(DKIM, TTL, LACKING, switched.state, T0 + 100)  # a server flapping later: no switch back
    assert later.phase is Phase.SWITCH and later.state == switched.state and not later.switches_now
    assert "signing with new since" in later.next
    retire = rule.decide(DKIM, TTL, EVERYWHERE, switched.state, T0 + 900 + MARGIN)
    assert retire.phase is Phase.RETIRE and retire.signing == "new" and "remove dkim.previous" in retire.next


def test_a_state_of_another_selector_pair_is_ignored() -> None:
    decided = rule.decide(DKIM, TTL, LACKING, RotationState("x", "old", T0, T0 + 1), T0 + 5)
    assert decided.phase is Phase.PUBLISH


def test_dropping_previous_is_refused_before_the_retire_time_and_allowed_after() -> None:
    state = RotationState("new", "old", T0, T0 + 900 + MARGIN)
    steady = Dkim("new")
    assert "may be deleted only after" in (rule.retire_problem(steady, state, T0 + 10) or "")
    assert rule.retire_problem(steady, state, T0 + 900 + MARGIN) is None
    assert "before the gateway switched" in (rule.retire_problem(steady, RotationState("new", "old"), T0) or "")
    assert "still running" in (rule.retire_problem(Dkim("newer", previous="other"), state, T0) or "")
    assert rule.retire_problem(Dkim("newer", previous="new"), state, T0) is None  # the next rotation, from the new key
    assert rule.retire_problem(DKIM, state, T0) is None and rule.retire_problem(steady, None, T0) is None


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "not a JSON object"), ("{", "not JSON"), ('{"selector": "a b", "previous": "old"}', "selector"),
    ('{"selector": "new", "previous": "old", "switchedAt": "soon"}', "switchedAt"),
    ('{"selector": "new", "previous": "old", "retireAt": true}', "retireAt"),
])
def test_a_broken_state_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(rule.RotationError, match=message):
        RotationState.loads(text)


def test_the_state_round_trips_through_json() -> None:
    state = RotationState("new", "old", T0, T0 + 5)
    assert RotationState.loads(json.dumps(state.as_json())) == state
    assert RotationState.loads("") is None and RotationState.from_json({}) is None


# --- the stack, the plan, the rendered tables --------------------------------------------------


def values(**dkim_options: Any) -> dict[str, Any]:
    return {
        "domain": "example.org",
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.org", "database": "prod"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": "mx1.example.org", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "new", **dkim_options},
        "gateway": {"odooAddresses": ["10.0.0.5"]},
    }


def test_stack_keys_are_read_and_checked() -> None:
    stack = from_config(values(previous="old", retireMargin=60))
    assert (stack.dkim.selector, stack.dkim.previous, stack.dkim.retire_margin) == ("new", "old", 60)
    assert from_config(values()).dkim.retire_margin == rule.DEFAULT_MARGIN == 5 * 86400
    for bad, message in (({"previous": "new"}, "mailstack:dkim.previous: is the same selector"),
                         ({"previous": "a b"}, "mailstack:dkim.previous:"),
                         ({"previous": "old", "retireMargin": -1}, "mailstack:dkim.retireMargin: -1 is not between")):
        with pytest.raises(ConfigErrors, match=message):
            from_config(values(**bad))


def keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return private_pem(key), public_pem(key)


def test_the_plan_publishes_both_keys_and_the_tables_follow_the_phase() -> None:
    stack = from_config(values(previous="old"))
    (new_private, new_public), (old_private, old_public) = keypair(), keypair()
    planned = plan.build(stack, new_public, old_public)
    keys = {r.name: r for r in planned.of_purpose("dkim")}
    assert keys["new._domainkey.example.org"].content == dkim.txt_value(new_public)
    assert keys["old._domainkey.example.org"].content == dkim.txt_value(old_public)
    assert keys["old._domainkey.example.org"].origin == ("dkim", "previous")
    assert planned.rotation_names() == ({"new._domainkey.example.org": dkim.public_key_base64(new_public)}, ["old._domainkey.example.org"])
    # Nothing observed: the previous key, the one known to be published, signs.
    assert planned.signing_selector == "old"
    files = render.render(planned, dkim_private_key_pem=old_private)
    assert files["opendkim/SigningTable"].text.strip() == "*@example.org\told._domainkey.example.org"
    assert "opendkim/keys/old.private" in files
    switched = planned.with_rotation(rule.decide(stack.dkim, TTL, EVERYWHERE, None, T0))
    files = render.render(switched, dkim_private_key_pem=new_private)
    assert files["opendkim/SigningTable"].text.strip() == "*@example.org\tnew._domainkey.example.org"
    assert "example.org:new:" in files["opendkim/KeyTable"].text and "opendkim/keys/new.private" in files
    # Pulumi fills each selector's record from its own generated key.
    pending = plan.build(stack)
    filled = pending.with_gateway_key(new_public).with_gateway_key(old_public, "old")
    assert {r.name: r.content for r in filled.of_purpose("dkim")} == {k: r.content for k, r in keys.items()}
    assert not filled.needs_gateway_key


# --- the Pulumi program under mocks, one run per phase -----------------------------------------


class DistinctKeys(Mocks):
    """Mocks whose ``tls.PrivateKey`` answers a different real key per resource name, so
    the key a gateway receives can be told apart."""

    made: dict[str, rsa.RSAPrivateKey] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == PRIVATE_KEY_TOKEN:
            key = self.made.setdefault(args.name, rsa.generate_private_key(public_exponent=65537, key_size=1024))
            self.public_keys[args.name] = public_pem(key)
            state.update(publicKeyPem=public_pem(key), privateKeyPem=private_pem(key))
        return resource_id, state


def run_phase(monkeypatch: pytest.MonkeyPatch, observed: Observation | None, **dkim_options: Any) -> ProgramRun:
    monkeypatch.setattr(provider, "observe", lambda planned: observed)
    config = {f"mailstack:{k}": config_string(v) for k, v in values(**dkim_options).items()}
    return run_program(config=config, secret_keys=["mailstack:sshPrivateKey"], mocks=DistinctKeys(real_private_keys=True))


def signing_table(run: ProgramRun) -> str:
    copies = [r for r in run.of_type("command:remote:CopyToRemote") if r.inputs["remotePath"] == "/etc/opendkim/SigningTable"]
    assert len(copies) == 1
    return str(copies[0].inputs["source"].text).strip()


def secret_of(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and "value" in value else value


def key_records(run: ProgramRun) -> dict[str, str]:
    return {r.inputs["name"]: r.inputs["content"].replace('" "', "").strip('"') for r in run.of_type(CF_RECORD)
            if "._domainkey." in r.inputs["name"]}


@pytest.mark.parametrize(("phase", "observed", "signing"), [("publish", LACKING, "old"), ("switch", EVERYWHERE, "new")])
def test_program_publishes_both_keys_and_signs_by_phase(monkeypatch: pytest.MonkeyPatch, phase: str, observed: Observation,
                                                        signing: str) -> None:
    run = run_phase(monkeypatch, observed, previous="old", retireMargin=MARGIN)
    pems = run.public_keys
    assert set(pems) == {"dkim-new", "dkim-old"}
    assert key_records(run) == {"new._domainkey.example.org": dkim.txt_value(pems["dkim-new"]),
                                "old._domainkey.example.org": dkim.txt_value(pems["dkim-old"])}
    assert signing_table(run) == f"*@example.org\t{signing}._domainkey.example.org"
    command = run.named("gateway-mx1.example.org-dkim-key")
    assert f"/etc/opendkim/keys/{signing}.private" in command.inputs["create"]
    assert secret_of(command.inputs["stdin"]) == private_pem(DistinctKeys.made[f"dkim-{signing}"])
    assert run.exports["dkimPhase"] == phase and run.exports["dkimSigningSelector"] == signing
    assert (run.exports["dkimSelector"], run.exports["dkimPublicKeyPem"]) == ("new", pems["dkim-new"])
    assert run.exports["dkimPreviousPublicKeyPem"] == pems["dkim-old"]
    # Every DNS record waits for the rotation's guard; the old key carries the legacy name.
    guard = run.named("dkim-rotation")
    assert guard.inputs["previous"] == "old" and provider.observation_from_json(guard.inputs["observed"]) == observed
    assert all(guard.urn in r.dependencies for r in run.of_type(CF_RECORD))
    assert all(r.protect for r in run.of_type(CF_RECORD) if "._domainkey." in r.inputs["name"])


def test_program_after_retire_publishes_only_the_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_phase(monkeypatch, None)
    assert set(run.public_keys) == {"dkim-new"}
    assert list(key_records(run)) == ["new._domainkey.example.org"]
    assert signing_table(run) == "*@example.org\tnew._domainkey.example.org"
    assert run.named("dkim-rotation").inputs["previous"] == "" and run.exports["dkimPhase"] == "steady"


# --- the DkimRotation provider: the state and the guard ------------------------------------------


def props(previous: str, observed: Observation | None) -> dict[str, Any]:
    return {"selector": "new", "previous": previous, "retireMargin": MARGIN, "ttl": TTL, "observed": provider.observation_json(observed)}


def test_provider_records_the_switch_once_and_refuses_an_early_retire(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [T0]
    monkeypatch.setattr(provider.time, "time", lambda: clock[0])
    rotation = provider.DkimRotationProvider()
    created = rotation.create(props("old", LACKING)).outs
    assert created is not None and created["phase"] == "publish" and created["signing"] == "old" and created["state"]["switchedAt"] is None
    clock[0] = T0 + 60
    switched = rotation.update("dkim-rotation", created, props("old", EVERYWHERE)).outs
    assert switched is not None and switched["phase"] == "switch" and switched["state"]["switchedAt"] == T0 + 60
    assert switched["retireAt"] == T0 + 60 + 900 + MARGIN
    clock[0] = T0 + 120
    assert not rotation.diff("dkim-rotation", switched, props("old", LACKING)).changes  # answers alone are no change
    again = rotation.update("dkim-rotation", switched, props("old", LACKING)).outs
    assert again is not None and again["state"] == switched["state"]  # recorded once
    with pytest.raises(ValueError, match=r"mailstack:dkim.previous: old's record may be deleted only after"):
        rotation.diff("dkim-rotation", again, props("", None))
    clock[0] = T0 + 60 + 900 + MARGIN
    assert rotation.update("dkim-rotation", again, props("old", EVERYWHERE)).outs["phase"] == "retire"  # type: ignore[index]
    assert rotation.diff("dkim-rotation", again, props("", None)).changes
    done = rotation.update("dkim-rotation", again, props("", None)).outs
    assert done is not None and done["phase"] == "steady" and done["state"] == {}
    assert not rotation.diff("dkim-rotation", done, props("", None)).changes  # a steady stack stays quiet


# --- asking the servers: a server that does not answer is not a server that has the key ---------


def test_a_silent_server_counts_as_lacking_the_new_key() -> None:
    from mailstack.rfc2136 import authoritative
    from tests.ports import free_port

    silent = authoritative.Authority("ns9.example.org", "127.0.154.9", free_port("127.0.154.9"))
    observed = authoritative.observe([silent], {"new._domainkey.example.org": None}, ["old._domainkey.example.org"], timeout=0.3)
    assert not observed.new_everywhere and observed.lacking == (silent.where,)
    assert observed.servers[0].error and "Timeout" in observed.servers[0].error
    assert rule.decide(DKIM, TTL, observed, None, T0).signing == "old"


# --- the provider as the engine drives it: Pulumi's dynamic-provider host over gRPC ------------

ROTATION_URN = "urn:pulumi:test::mailstack::pulumi-python:dynamic/mailstack:DkimRotation::dkim-rotation"


@pytest.fixture
def provider_host(tmp_path: Any) -> Any:
    import os
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    process = subprocess.Popen([sys.executable, "-m", "pulumi.dynamic"], cwd=tmp_path, stdout=subprocess.PIPE,
                               env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{int(process.stdout.readline().decode().strip())}")
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_guard_fails_the_deployment_in_the_provider_host(provider_host: Any) -> None:
    import grpc
    from pulumi.dynamic.dynamic import serialize_provider
    from pulumi.runtime.proto import provider_pb2

    from tests.test_rfc2136_grpc import plain, struct

    serialized = serialize_provider(provider.DkimRotationProvider())

    def bag(previous: str, observed: Observation | None, margin: int, ttl: int) -> Any:
        return struct({**props(previous, observed), "retireMargin": margin, "ttl": ttl, "__provider": serialized})

    for margin, ttl, allowed in ((3600, TTL, False), (0, 0, True)):
        created = provider_host.Create(provider_pb2.CreateRequest(urn=ROTATION_URN, properties=bag("old", LACKING, margin, ttl)))
        assert plain(created.properties)["phase"] == "publish"
        switched = provider_host.Update(provider_pb2.UpdateRequest(id=created.id, urn=ROTATION_URN, olds=created.properties,
                                                                   news=bag("old", Observation((ServerView("ns1"),)), margin, ttl)))
        state = plain(switched.properties)
        assert state["phase"] == ("switch" if not allowed else "retire") and state["state"]["switchedAt"] is not None
        request = provider_pb2.DiffRequest(id=created.id, urn=ROTATION_URN, olds=switched.properties, news=bag("", None, margin, ttl))
        if allowed:
            assert provider_host.Diff(request).changes == provider_pb2.DiffResponse.DIFF_SOME
        else:
            with pytest.raises(grpc.RpcError) as caught:
                provider_host.Diff(request)
            assert "mailstack:dkim.previous: old's record may be deleted only after" in caught.value.details()


# --- the lab: both keys published, the previous one signs (nothing observed) ---------------------


def test_the_lab_publishes_both_keys_and_signs_with_the_previous_one(tmp_path: Any) -> None:
    import dataclasses

    from mailstack.config import stackfile
    from mailstack.lab import control, gateway as lab_gateway
    from mailstack.lab.state import LabState
    from mailstack.lab.topology import build as build_topology
    from tests import project

    path = project.stack_path("onpremise")
    stack = stackfile.load(path)
    stack = dataclasses.replace(stack, dkim=dataclasses.replace(stack.dkim, selector="s2027", previous=stack.dkim.selector, bits=1024))
    state = LabState(tmp_path, stack_file=str(path))
    planned = control.lab_plan(state, stack, build_topology(stack))
    assert not planned.needs_gateway_key and planned.signing_selector == stack.dkim.previous
    published = {dkim.selector_of(r.name): r.content for r in planned.of_purpose("dkim") if r.origin[0] == "dkim"}
    for selector in ("s2027", stack.dkim.previous):
        assert published[selector] == dkim.txt_value(LabState.public_key_pem(state.dkim_private_key(selector, 1024)))
    files = lab_gateway.rendered(state, planned, planned.stack.gateways[0])
    assert files[f"opendkim/keys/{stack.dkim.previous}.private"].text == state.dkim_private_key(stack.dkim.previous, 1024)


# --- the CLI refuses what it cannot use, naming the option (exit 2, no traceback) ----------------


def cli(*args: str, cwd: Any = None) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mailstack.cli", *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_cli_refuses_a_broken_state_file_and_a_key_of_the_wrong_selector(tmp_path: Any) -> None:
    import yaml

    stack_file = tmp_path / "Pulumi.rotation.yaml"
    stack_file.write_text(yaml.safe_dump({"config": {f"mailstack:{k}": v for k, v in values(previous="old").items()}}))
    broken = tmp_path / "rotation.json"
    broken.write_text('{"selector": "new", "previous": "old", "switchedAt": "yesterday"}')
    for command in ("plan", "diff"):
        result = cli(command, "--stack-file", str(stack_file), "--nameserver", "127.0.154.9:9", "--dkim-rotation", str(broken))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"--dkim-rotation {broken}: the DKIM rotation state's switchedAt is not a time" in result.stderr, result.stderr
    key = tmp_path / "new.pem"
    key.write_text(keypair()[0])
    result = cli("render", "--stack-file", str(stack_file), "--out", str(tmp_path / "out"), "--dkim-private-key", str(key))
    assert result.returncode == 2 and "--dkim-private-key: old (dkim.previous) signs" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_rfc2136_program_fills_each_selector_from_its_key_and_waits_for_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi.runtime import rpc

    from mailstack.core import zonefile
    from tests import project
    from tests.pulumi_harness import stack_config

    config, secrets = stack_config(project.stack_path("lab"))
    config["mailstack:tsigSecret"] = "c2VjcmV0LW9mLXRoZS1sYWItdHNpZy1rZXk="
    config["mailstack:dkim"] = json.dumps({"selector": "s2027", "previous": "lab"})
    monkeypatch.setattr(provider, "observe", lambda planned: LACKING)
    run = run_program(config=config, secret_keys=secrets, mocks=DistinctKeys())
    [resource] = run.of_type("pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords")
    values_by_name = {r["name"]: r["value"] for r in rpc.unwrap_rpc_secret(resource.inputs["records"]) if "._domainkey." in r["name"]}
    for selector in ("s2027", "lab"):
        record = Record(f"{selector}._domainkey.acme.test", "TXT", dkim.txt_value(run.public_keys[f"dkim-{selector}"]), 1)
        assert values_by_name[record.name] == zonefile.rdata(record).to_text()
    assert run.named("dkim-rotation").urn in resource.dependencies
    assert run.exports["dkimSigningSelector"] == "lab"
