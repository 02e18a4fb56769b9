"""The BIND runner serves planned records and accepts TSIG-signed RFC 2136 updates."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dns.query
import dns.rcode
import dns.resolver
import dns.tsigkeyring
import dns.update
import pytest

from mailstack.config import stackfile
from mailstack.core.errors import MailstackError
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from tests import project
from tests.project import planned as plan
from tests.servers import require_binary, require_root

ADDRESS = "127.0.60.1"
PORT = 5390


def _resolver() -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [ADDRESS]
    resolver.port = PORT
    resolver.lifetime = 3
    return resolver


@pytest.fixture
def server(tmp_path: Path):
    require_root()
    require_binary("named")
    secret = base64.b64encode(os.urandom(32)).decode()
    bind = BindServer(tmp_path / "bind", ADDRESS, PORT)
    bind.add_tsig_key("test-key", "hmac-sha256", secret)
    bind.add_zone("example.net", plan(stackfile.load(project.stack_path("onpremise"))), dynamic=True)
    with bind:
        yield bind, secret
    assert not netns.has_address(ADDRESS), "the runner must remove the loopback address it added"


def test_serves_the_plan_exactly(server) -> None:
    bind, _ = server
    records = plan(stackfile.load(project.stack_path("onpremise")))
    resolver = _resolver()
    for record in records:
        answer = resolver.resolve(record.name, record.type)
        texts = {rdata.to_text() for rdata in answer}
        if record.type == "TXT":
            assert {"".join(s.decode() for s in r.strings) for r in answer} >= {record.content}
        elif record.type == "MX":
            assert f"{record.priority} {record.content}." in texts
        elif record.type == "CNAME":
            assert f"{record.content}." in texts
        else:
            assert record.content in texts


def test_signed_update_is_applied_and_unsigned_refused(server) -> None:
    bind, secret = server
    keyring = dns.tsigkeyring.from_text({"test-key": secret})
    update = dns.update.UpdateMessage("example.net", keyring=keyring, keyalgorithm="hmac-sha256")
    update.add("probe", 300, "TXT", '"signed"')
    assert dns.query.tcp(update, ADDRESS, port=PORT, timeout=3).rcode() == dns.rcode.NOERROR
    assert _resolver().resolve("probe.example.net", "TXT")[0].to_text() == '"signed"'

    unsigned = dns.update.UpdateMessage("example.net")
    unsigned.add("intruder", 300, "TXT", '"unsigned"')
    assert dns.query.tcp(unsigned, ADDRESS, port=PORT, timeout=3).rcode() == dns.rcode.REFUSED


def test_broken_configuration_is_reported_not_started(tmp_path: Path) -> None:
    require_root()
    require_binary("named")
    bind = BindServer(tmp_path / "bind", ADDRESS, PORT)
    bind.add_tsig_key("bad-key", "no-such-algorithm", "c2VjcmV0")
    bind.add_zone("example.org")
    with pytest.raises(MailstackError, match="named-checkconf"):
        bind.start()
    assert bind.pid is None
    assert not netns.has_address(ADDRESS)


def test_zone_that_fails_to_load_answers_servfail(tmp_path: Path) -> None:
    """Checks rely on this to produce SERVFAIL fixtures: named runs, the zone does not."""
    require_root()
    require_binary("named")
    bind = BindServer(tmp_path / "bind", ADDRESS, PORT)
    bind.add_zone("good.example", extra_lines=["@ 300 IN TXT \"ok\""])
    bind.add_zone("broken.example", extra_lines=["@ 300 IN A not-an-address"])
    with bind:
        assert _resolver().resolve("good.example", "TXT")[0].to_text() == '"ok"'
        with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
            _resolver().resolve("broken.example", "TXT")
