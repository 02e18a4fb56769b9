"""The Pulumi program for an rfc2136 stack under mocks: one dynamic resource per record
set, values equal to the plan byte for byte (the DKIM key from the generated key), the
TSIG secret kept secret, nothing on Cloudflare."""

from __future__ import annotations

import pickle
from collections import defaultdict

import dill
import pulumi
import pytest
from pulumi.runtime import rpc

from mailstack import plan
from mailstack.config import stackfile
from mailstack.core import zonefile
from mailstack.providers.rfc2136 import Rfc2136Provider
from tests import project
from tests.pulumi_harness import PRIVATE_KEY_TOKEN, run_program, stack_config

RFC2136 = "pulumi-python:dynamic/mailstack:Rfc2136Record"
COMPONENT = "mailstack:dns:Rfc2136Records"
SECRET = "c2VjcmV0LW9mLXRoZS1sYWItdHNpZy1rZXk="
LAB = project.stack_path("lab")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_lab():
    config, secrets = stack_config(LAB)
    config["mailstack:tsigSecret"] = SECRET
    return run_program(config=config, secret_keys=secrets)


def test_lab_stack_is_rfc2136() -> None:
    stack = stackfile.load(LAB)
    assert stack.dns.provider == "rfc2136"
    assert stack.dns.server and stack.dns.tsig_key_name


def test_one_resource_per_record_set_with_the_planned_values() -> None:
    run = run_lab()
    stack = stackfile.load(LAB)
    assert run.of_type("cloudflare:index/dnsRecord:DnsRecord") == []
    [component] = run.of_type(COMPONENT)
    resources = run.of_type(RFC2136)
    assert all(r.parent == component.urn for r in resources)

    pem = run.public_keys[run.of_type(PRIVATE_KEY_TOKEN)[0].name]
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    for record in plan.build(stack, pem).records:
        expected[(record.name, record.type)].append(zonefile.rdata(record).to_text())

    found = {}
    for resource in resources:
        inputs = resource.inputs
        key = (inputs["name"], inputs["type"])
        assert resource.name == f"mail-{inputs['type'].lower()}-{inputs['name']}"
        assert inputs["server"] == stack.dns.server and inputs["port"] == stack.dns.port
        assert inputs["zone"] == "acme.test" and inputs["ttl"] == 300
        assert inputs["tsigKeyName"] == "mailstack-lab" and inputs["tsigAlgorithm"] == "hmac-sha256"
        assert rpc.is_rpc_secret(inputs["tsigSecret"]), "the TSIG secret must reach the engine as a secret"
        assert rpc.unwrap_rpc_secret(inputs["tsigSecret"]) == SECRET
        found[key] = sorted(rpc.unwrap_rpc_secret(inputs["values"]))
    assert found == {key: sorted(values) for key, values in expected.items()}
    dkim_values = found[("lab._domainkey.acme.test", "TXT")]
    assert len(dkim_values) == 1 and '" "' in dkim_values[0], "a 2048-bit key spans two TXT strings"
    mail_critical = {r.inputs["type"] for r in resources if r.protect}
    assert {"MX", "TXT"} <= mail_critical


def test_the_provider_travels_pickled_and_importable() -> None:
    """Pulumi runs the provider in another process from ``__provider``: it must unpickle
    by reference to this importable module, carrying no state."""
    run = run_lab()
    serialized = rpc.unwrap_rpc_secret(run.of_type(RFC2136)[0].inputs["__provider"])
    import base64

    provider = dill.loads(base64.b64decode(serialized))
    assert type(provider) is Rfc2136Provider and vars(provider) == {}
    assert b"mailstack.providers.rfc2136" in base64.b64decode(serialized)
    assert SECRET.encode() not in base64.b64decode(serialized)
    assert pickle.dumps(provider)


def test_missing_tsig_secret_is_a_clear_error() -> None:
    config, _ = stack_config(LAB)
    del config["mailstack:tsigSecret"]
    with pytest.raises(pulumi.RunError, match="mailstack:tsigSecret: is required for provider rfc2136"):
        run_program(config=config)
