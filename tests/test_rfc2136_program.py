"""The Pulumi program for an rfc2136 stack under mocks: one dynamic resource holding every
planned record (the provider decides all writes before the first), values equal to the
plan byte for byte (the DKIM key from the generated key), the TSIG secret kept secret,
protected while it holds mail records, ``dns.adopt`` passed on, nothing on Cloudflare."""

from __future__ import annotations

import json
import pickle

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

RFC2136 = "pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords"
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


def test_one_resource_holds_every_planned_record_with_its_value() -> None:
    run = run_lab()
    stack = stackfile.load(LAB)
    assert run.of_type("cloudflare:index/dnsRecord:DnsRecord") == []
    [component] = run.of_type(COMPONENT)
    [resource] = run.of_type(RFC2136)
    assert resource.parent == component.urn and resource.name == "mail-rfc2136"
    inputs = resource.inputs
    assert inputs["server"] == stack.dns.server and inputs["port"] == stack.dns.port and inputs["zones"] == ["acme.test"]
    assert inputs["tsigKeyName"] == "mailstack-lab" and inputs["tsigAlgorithm"] == "hmac-sha256"
    assert rpc.is_rpc_secret(inputs["tsigSecret"]), "the TSIG secret must reach the engine as a secret"
    assert rpc.unwrap_rpc_secret(inputs["tsigSecret"]) == SECRET
    assert inputs["adopt"] == {} and inputs["allowDelete"] is False
    assert resource.protect, "it holds MX, SPF, DKIM and DMARC records"

    pem = run.public_keys[run.of_type(PRIVATE_KEY_TOKEN)[0].name]
    expected = sorted((r.name, r.type, r.ttl, zonefile.rdata(r).to_text()) for r in plan.build(stack, pem).records)
    found = sorted((r["name"], r["type"], int(r["ttl"]), r["value"]) for r in rpc.unwrap_rpc_secret(inputs["records"]))
    assert found == expected
    assert all(r["zone"] == "acme.test" for r in inputs["records"])
    [dkim_value] = [r["value"] for r in inputs["records"] if r["name"] == "lab._domainkey.acme.test"]
    assert '" "' in dkim_value, "a 2048-bit key spans two TXT strings"


def test_adopt_and_allow_delete_reach_the_resource() -> None:
    config, secrets = stack_config(LAB)
    config["mailstack:tsigSecret"] = SECRET
    dns = json.loads(config["mailstack:dns"])
    dns.update(allowDelete=True, adopt={"txt-acme.test": "v=spf1 include:_spf.google.com ~all"})
    config["mailstack:dns"] = json.dumps(dns)
    [resource] = run_program(config=config, secret_keys=secrets).of_type(RFC2136)
    assert resource.inputs["adopt"] == {"txt-acme.test": "v=spf1 include:_spf.google.com ~all"}
    assert resource.inputs["allowDelete"] is True and resource.protect is False
    dns["adopt"] = {"txt-nowhere.acme.test": "x"}
    config["mailstack:dns"] = json.dumps(dns)
    with pytest.raises(pulumi.RunError, match=r"mailstack:dns.adopt.txt-nowhere.acme.test: .*is not a record this stack plans"):
        run_program(config=config, secret_keys=secrets)


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
