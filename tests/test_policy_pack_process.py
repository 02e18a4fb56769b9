"""The policy pack as the Pulumi engine runs it: ``policy/`` through Pulumi's Python
pack runner in its own process, serving the analyzer gRPC API on loopback, the stack's config handed over in
``PULUMI_CONFIG`` and the policy config through ``Configure`` — the same calls
``pulumi preview --policy-pack policy --policy-pack-config FILE`` makes, without the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from mailstack.config import stackfile
from mailstack.policy import policies
from tests import project
from tests.pulumi_harness import Registered, run_program, stack_config

ROOT = Path(__file__).resolve().parent.parent
ONLINE = project.stack_path("online")


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    config, _ = stack_config(ONLINE)
    # The engine runs Python packs unbuffered (as the Python language host does): the
    # pack prints its port and the engine reads that line.
    env = {**os.environ, "PULUMI_CONFIG": json.dumps(config), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # the pack imports the installed mailstack, no sys.path edit
    process = subprocess.Popen(
        # Pulumi's own runner for Python packs: `python -m pulumi.policy ENGINE PACK_DIR`
        # (the engine address is only used by programs that call back; the pack serves).
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(ROOT / "policy")],
        cwd=ROOT / "policy",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        assert line.isdigit(), f"the pack did not print its port: {line!r} {process.stderr.read(2000) if process.stderr else ''!r}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def _options(resource: Registered) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect)


def _resources() -> list[Registered]:
    return [r for r in run_program(ONLINE).resources if r.type == "cloudflare:index/dnsRecord:DnsRecord"]


def test_pack_describes_every_policy_with_its_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == policies.PACK_NAME
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert sorted(levels) == sorted(policies.names_of_policies())
    assert levels["spf-valid"] == analyzer_pb2.MANDATORY
    assert levels["spf-size-advised"] == analyzer_pb2.ADVISORY


def test_pack_refuses_a_proxied_mx_and_accepts_the_plan(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest())
    for resource in _resources():
        request = analyzer_pb2.AnalyzeRequest(
            type=resource.type, properties=_struct(resource.inputs), urn=resource.urn, name=resource.name,
            options=_options(resource),
        )
        assert list(analyzer.Analyze(request).diagnostics) == [], resource.name
    mx = next(r for r in _resources() if r.inputs["type"] == "MX")
    broken = dict(mx.inputs, proxied=True)
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=mx.type, properties=_struct(broken), urn=mx.urn, name=mx.name, options=_options(mx))
    )
    (diagnostic,) = response.diagnostics
    assert diagnostic.policyName == "mail-records-not-proxied"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "mail.example.com MX" in diagnostic.message


def test_stack_policies_read_the_stack_config_and_the_policy_config(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    resources = [r for r in _resources() if r.inputs["name"] != "_dmarc.example.com"]
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=_options(r))
            for r in resources
        ]
    )
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest())
    found = {d.policyName: d for d in analyzer.AnalyzeStack(request).diagnostics}
    assert set(found) == {"domains-authenticated", "planned-records-kept"}
    assert "example.com has no DMARC record" in found["domains-authenticated"].message

    # The policy config file (--policy-pack-config) lowers a level and allows deletion.
    config = {
        "planned-records-kept": analyzer_pb2.PolicyConfig(
            enforcementLevel=analyzer_pb2.MANDATORY, properties=_struct({"allowDelete": True})
        ),
        "domains-authenticated": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.ADVISORY),
    }
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=config))
    diagnostics = list(analyzer.AnalyzeStack(request).diagnostics)
    assert [(d.policyName, d.enforcementLevel) for d in diagnostics] == [("domains-authenticated", analyzer_pb2.ADVISORY)]
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest())
