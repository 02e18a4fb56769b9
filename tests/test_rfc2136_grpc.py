"""The provider as the Pulumi engine drives it: Pulumi's own dynamic-provider host
(``python -m pulumi.dynamic``) in a separate process, spoken to over gRPC with the
pickled provider in ``__provider``, against a real BIND.

This is where the dynamic-provider pitfalls show (design.md §5): the provider must
unpickle by reference from an importable module in a fresh process, build its DNS
clients inside the methods, and return full state from create/update, because the
engine passes those outputs (with ``__provider``) back as ``olds`` and to ``delete``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.resolver
import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from mailstack.core import txt
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from mailstack.providers.rfc2136 import Rfc2136Provider
from tests.ports import free_port
from tests.servers import require_binary, require_root

URN = "urn:pulumi:test::mailstack::mailstack:dns:Rfc2136Records$pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords::mail-rfc2136"
KEY = "mailstack-grpc"


def struct(props: dict[str, Any]) -> Any:
    # A private loop: asyncio.run would unset the thread's current loop, which the
    # Pulumi mock tests that run later in the same process rely on.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def plain(message: Any) -> dict[str, Any]:
    return {k: rpc.unwrap_rpc_secret(v) for k, v in rpc.deserialize_properties(message).items()}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[provider_pb2_grpc.ResourceProviderStub, str, int, str]]:
    require_root()
    require_binary("named")
    address = random.choice([f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")])
    port = free_port(address)
    secret = base64.b64encode(os.urandom(32)).decode()
    bind = BindServer(tmp_path / "bind", address, port)
    bind.add_tsig_key(KEY, "hmac-sha256", secret)
    bind.add_zone("lab.example", extra_lines=['@ 300 IN TXT "google-site-verification=keep-me"'], dynamic=True)
    bind.add_zone("old.example", extra_lines=['@ 300 IN TXT "v=spf1 include:_spf.google.com ~all"'], dynamic=True)
    process = subprocess.Popen(
        # No PYTHONPATH: the pickled provider is imported from the installed package,
        # as in Pulumi's provider host on a user's machine.
        [sys.executable, "-m", "pulumi.dynamic"], cwd=tmp_path, stdout=subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        grpc_port = int(process.stdout.readline().decode().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        with bind:
            yield provider_pb2_grpc.ResourceProviderStub(channel), address, port, secret
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def served(address: str, port: int, name: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [address], port
    try:
        return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]  # type: ignore[attr-defined]
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def bag(address: str, port: int, secret: str, zone: str, records: list[dict[str, Any]], provider: str) -> dict[str, Any]:
    return {
        "server": address, "port": port, "zones": [zone], "records": records, "tsigKeyName": KEY,
        "tsigAlgorithm": "hmac-sha256", "tsigSecret": secret, "adopt": {}, "allowDelete": False, "__provider": provider,
    }


def test_engine_lifecycle_through_the_dynamic_provider_host(host) -> None:
    stub, address, port, secret = host
    provider = serialize_provider(Rfc2136Provider())
    long_value = "v=DKIM1; k=rsa; p=" + "B" * 300
    records = [
        {"zone": "lab.example", "name": "Probe.Lab.Example.", "type": "txt", "ttl": 300, "value": txt.quoted(long_value)},
        {"zone": "lab.example", "name": "lab.example", "type": "TXT", "ttl": 300, "value": '"v=spf1 -all"'},
    ]
    news = bag(address, port, secret, "lab.example", records, provider)
    checked = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    assert list(checked.failures) == []
    inputs = plain(checked.inputs)
    assert [r["name"] for r in inputs["records"]] == ["probe.lab.example", "lab.example"]

    created = stub.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    assert created.id == f"lab.example@{address}:{port}"
    state = plain(created.properties)
    assert state["__provider"] == provider and state["tsigSecret"] == secret and state["port"] == port
    assert served(address, port, "probe.lab.example") == [long_value]
    assert sorted(served(address, port, "lab.example")) == ["google-site-verification=keep-me", "v=spf1 -all"]

    read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=URN, properties=created.properties))
    assert read.id == created.id and plain(read.properties)["records"] == state["records"]

    changed = {**news, "records": [records[0], {**records[1], "value": '"v=spf1 mx -all"'}]}
    checked = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=created.properties, news=struct(changed)))
    assert list(checked.failures) == [], "the old SPF is mailstack's (the state says so): an update, not a conflict"
    diff = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=checked.inputs))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    updated = stub.Update(provider_pb2.UpdateRequest(id=created.id, urn=URN, olds=created.properties, news=checked.inputs))
    assert sorted(served(address, port, "lab.example")) == ["google-site-verification=keep-me", "v=spf1 mx -all"]

    moved = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=updated.properties, news=struct({**changed, "port": port + 1})))
    diff = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=updated.properties, news=moved.inputs))
    assert list(diff.replaces) == ["port"] and diff.deleteBeforeReplace

    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=URN, properties=updated.properties))
    assert served(address, port, "probe.lab.example") == []
    assert served(address, port, "lab.example") == ["google-site-verification=keep-me"]


def test_a_conflict_fails_check_in_the_provider_host_as_at_preview(host) -> None:
    """``pulumi preview`` calls Check: a foreign SPF where the stack plans one fails it,
    naming the record and both ways out, and nothing is written."""
    stub, address, port, secret = host
    records = [{"zone": "old.example", "name": "old.example", "type": "TXT", "ttl": 300, "value": '"v=spf1 -all"'},
               {"zone": "old.example", "name": "_dmarc.old.example", "type": "TXT", "ttl": 300, "value": '"v=DMARC1; p=reject"'}]
    news = bag(address, port, secret, "old.example", records, serialize_provider(Rfc2136Provider()))
    checked = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    [failure] = list(checked.failures)
    assert failure.property == "records"
    assert "old.example TXT 'v=spf1 include:_spf.google.com ~all' is not mailstack's" in failure.reason
    assert "mailstack:dns.adopt" in failure.reason and "remove it from the zone" in failure.reason
    assert secret not in failure.reason
    assert served(address, port, "_dmarc.old.example") == []
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    assert "nothing was written" in caught.value.details()
    assert served(address, port, "old.example") == ["v=spf1 include:_spf.google.com ~all"]


def test_a_refusal_reaches_the_engine_as_a_clear_error_without_the_secret(host) -> None:
    stub, address, port, _ = host
    wrong = base64.b64encode(os.urandom(32)).decode()
    records = [{"zone": "lab.example", "name": "x.lab.example", "type": "TXT", "ttl": 300, "value": '"x"'}]
    news = bag(address, port, wrong, "lab.example", records, serialize_provider(Rfc2136Provider()))
    checked = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    details = caught.value.details()
    assert "BADSIG" in details and "mailstack:tsigSecret does not match" in details
    assert wrong not in details
    assert served(address, port, "x.lab.example") == []
