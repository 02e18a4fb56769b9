"""Adopting a zone that already has records, against a real BIND: plan, then apply all or nothing.

The zone is the realistic export shipped in ``tests/zones/acme.test.zone`` (verification
TXTs for Google, Microsoft and Facebook at the apex, a web CNAME, a wildcard, a help desk
with its own MX and old SPF, a DKIM key of a sender the stack does not declare, CAA),
seeded into BIND as a dynamic zone; the records are the lab stack's plan, applied with
the lab's operations (``mailstack.lab.provision``, the RFC 2136 resource's ``apply``).
What BIND serves is read back by zone transfer and by plain queries with dnspython's
own resolver, so a passing apply that changed too much (or too little) fails here.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.query
import dns.resolver
import dns.update
import pytest

from mailstack import plan as planning
from mailstack.config import stackfile
from mailstack.core.errors import ProviderError
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.lab import netns, provision, seed
from mailstack.lab.bind import BindServer
from mailstack.lab.provision import Journal
from mailstack.plan import Plan
from mailstack.plan.changes import Action, identity
from mailstack.rfc2136 import resource, sync, wire
from mailstack.rfc2136.sync import ConflictError
from mailstack.rules import coexistence
from tests import project
from tests.ports import free_port
from tests.pulumi_harness import public_pem, rsa_key
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

KEY = "mailstack-adopt"
ZONE_FILE = Path(__file__).parent / "zones" / "acme.test.zone"
OLD_SPF = "v=spf1 include:_spf.google.com ~all"
#: One zone per test in the module's BIND (each test starts from the seed as exported).
ZONES = ("coexist.test", "conflict.test", "declared.test", "sharedmx.test", "race.test", "lostreply.test", "ttlfact.test")


def _address() -> str:
    free = [f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")]
    assert free, "every address of 127.0.112.0/24 is in use"
    return random.choice(free)


def stack_for(zone: str, tmp: Path, extra: str = "", dns: str = "") -> MailDomain:
    return stackfile.load(project.lab_variant(tmp, zone, extra=extra, dns=dns))


def seed_text(zone: str, *lines: str) -> str:
    return ZONE_FILE.read_text(encoding="utf-8").replace("acme.test", zone) + "".join(f"{line}\n" for line in lines)


def load_seed(zone: str, tmp: Path, *lines: str) -> seed.Seed:
    path = tmp / f"{zone}.zone"
    path.write_text(seed_text(zone, *lines), encoding="utf-8")
    return seed.load(path)


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BindServer, wire.Server]]:
    require_root()
    require_binary("named")
    tmp = tmp_path_factory.mktemp("adoption")
    secret = base64.b64encode(os.urandom(32)).decode()
    address = _address()
    server = BindServer(tmp / "bind", address, free_port(address))
    server.add_tsig_key(KEY, "hmac-sha256", secret)
    extra = {"sharedmx.test": ["sharedmx.test. 1 IN MX 50 backup-mx.mailhost.example."],
             "conflict.test": [f'conflict.test. 1 IN TXT "{OLD_SPF}"'], "declared.test": [f'declared.test. 1 IN TXT "{OLD_SPF}"']}
    for zone in ZONES:
        server.add_zone_file(zone, load_seed(zone, tmp, *extra.get(zone, ())).zone_text(), dynamic=True, update_key=KEY)
    with server:
        yield server, wire.Server(address, server.port, KEY, "hmac-sha256", secret)


def planned_for(stack: MailDomain) -> Plan:
    return planning.build(stack, public_pem(rsa_key(2048)))


def wanted(plan: Plan, server: wire.Server) -> dict[str, object]:
    return provision.desired(plan, server.address, server.port, KEY, server.secret)


def rrsets(server: wire.Server, zone: str) -> dict[tuple[str, str], tuple[int, frozenset[bytes]]]:
    """The zone by transfer: each set's TTL and rdata on the wire (SOA aside)."""
    snapshot = wire.transfer(server, zone)
    return {key: (ttl, frozenset(r.to_wire() for r in rdatas)) for key, (ttl, rdatas) in snapshot.rrsets.items() if key[1] != "SOA"}


def serial(server: wire.Server, zone: str) -> int:
    return wire.transfer(server, zone).serial


def asked(server: wire.Server, name: str, rdtype: str) -> list[str]:
    """What a resolver gets (dnspython's, not ours); TXT strings joined."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [server.address], server.port, 3
    try:
        answer = resolver.resolve(name, rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    if rdtype == "TXT":
        return sorted(b"".join(r.strings).decode() for r in answer)  # type: ignore[attr-defined]
    return sorted(r.to_text() for r in answer)


def assert_once(server: wire.Server, plan: Plan, records: list[Record] | None = None) -> None:
    """Every planned record served exactly once, and no exclusive role (SPF, DMARC…) twice."""
    live = sync.live_records(sync.read(server, plan.managed_zones).values())
    for record in plan.records if records is None else records:
        at = [r for r in live.get(record.name, ()) if r.type == record.type]
        assert sum(1 for r in at if identity(r) == identity(record)) == 1, f"{record.name} {record.type} {record.value}"
        role = coexistence.role(record)
        if coexistence.exclusive(role):
            assert [coexistence.role(r) for r in at].count(role) == 1, f"{record.name}: {role} twice"


def test_the_shipped_zone_parses_as_exported(tmp_path: Path) -> None:
    parsed = seed.load(ZONE_FILE)
    assert parsed.origin == "acme.test" and parsed.origin_line == 19  # the SOA owner, written without its final dot
    records = parsed.records()
    apex_txt = sorted(r.content for r in records["acme.test"] if r.type == "TXT")
    assert [t.split("=")[0] for t in apex_txt] == ["MS", "facebook-domain-verification", "google-site-verification"]
    assert {r.type for r in records["www.acme.test"]} == {"CNAME"} and "*.acme.test" in records
    assert parsed.line_of("www.acme.test", "CNAME") == 34
    seed.check([parsed], planning.build(stackfile.load(project.stack_path("lab"))))


def test_foreign_records_stay_byte_identical_through_an_apply_and_a_second_one(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "coexist.test"
    plan = planned_for(stack_for(zone, tmp_path))
    before, first_serial = rrsets(server, zone), serial(server, zone)
    journal = tmp_path / "records.json"
    decided = provision.apply(wanted(plan, server), journal)
    assert not decided.conflicts and decided.counts()["create"] == 5
    after = rrsets(server, zone)
    for key, (ttl, rdatas) in before.items():
        assert after[key][0] == ttl, f"{key}: TTL changed"
        assert rdatas <= after[key][1], f"{key}: a foreign record was removed or rewritten"
    planned_names = {(r.name, r.type) for r in plan.records}
    assert {k: v for k, v in after.items() if k not in planned_names} == {k: v for k, v in before.items() if k not in planned_names}
    assert serial(server, zone) == first_serial + 1, "one update for the whole change"
    assert asked(server, zone, "TXT") == sorted([
        "MS=ms48213579", "facebook-domain-verification=w1x2y3z4a5b6c7d8e9f0g1h2i3j4k5",
        "google-site-verification=3Kq1xR0yHc9Jd2m6wQp0Zs8aVbNtLfU4eGiO7kYhXcM", "v=spf1 ip4:127.0.40.10 -all",
    ])
    assert asked(server, f"_dmarc.{zone}", "TXT")[0].startswith("v=DMARC1; p=reject")
    assert asked(server, zone, "MX") == [f"10 mx1.{zone}."]

    again = provision.apply(wanted(plan, server), journal)
    assert not again.changed and again.counts()["same"] == 5
    assert rrsets(server, zone) == after and serial(server, zone) == first_serial + 1, "no change, no new serial"
    assert {r.name for r in Journal.load(journal).records()} == {r.name for r in plan.records}


def test_a_conflicting_old_spf_writes_nothing_and_says_both_ways_out(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "conflict.test"
    plan = planned_for(stack_for(zone, tmp_path))
    before, first_serial = rrsets(server, zone), serial(server, zone)
    journal = tmp_path / "records.json"
    with pytest.raises(ConflictError) as caught:
        provision.apply(wanted(plan, server), journal)
    message = str(caught.value)
    assert f"{zone} TXT '{OLD_SPF}' is not mailstack's" in message and "one SPF record per name (RFC 7208 §3.2)" in message
    assert f"mailstack:dns.adopt {{txt-{zone}: '{OLD_SPF}'}}" in message and "remove it from the zone" in message
    assert "nothing was written" in message
    assert rrsets(server, zone) == before and serial(server, zone) == first_serial
    assert asked(server, f"_dmarc.{zone}", "TXT") == [], "no DMARC p=reject beside the old SPF"
    assert not journal.exists()


def test_declaring_the_old_spf_replaces_it_and_nothing_else(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "declared.test"
    plan = planned_for(stack_for(zone, tmp_path, dns=f'    adopt:\n      txt-{zone}: "{OLD_SPF}"\n'))
    decided = provision.apply(wanted(plan, server), tmp_path / "records.json")
    [update] = decided.of(Action.UPDATE)
    assert update.live is not None and update.live.content == OLD_SPF
    txt = asked(server, zone, "TXT")
    assert [t for t in txt if t.startswith("v=spf1")] == ["v=spf1 ip4:127.0.40.10 -all"], "exactly one SPF"
    assert len(txt) == 4, "the three verification tokens stay"


def test_a_foreign_mx_beside_mailstacks_stays_when_mailstack_removes_its_own(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "sharedmx.test"
    plan = planned_for(stack_for(zone, tmp_path))
    journal = tmp_path / "records.json"
    provision.apply(wanted(plan, server), journal)
    assert asked(server, zone, "MX") == ["10 mx1.sharedmx.test.", "50 backup-mx.mailhost.example."]
    without_mx = wanted(plan, server)
    without_mx["records"] = [r for r in without_mx["records"] if r["type"] != "MX"]  # type: ignore[attr-defined,union-attr]
    with pytest.raises(ConflictError, match="needs mailstack:dns.allowDelete: true"):
        provision.apply(without_mx, journal)
    assert asked(server, zone, "MX") == ["10 mx1.sharedmx.test.", "50 backup-mx.mailhost.example."]
    provision.apply({**without_mx, "allowDelete": True}, journal)
    assert asked(server, zone, "MX") == ["50 backup-mx.mailhost.example."]


def test_a_zone_changed_between_read_and_write_gets_nothing_written(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "race.test"
    plan = planned_for(stack_for(zone, tmp_path))
    prepared = resource.prepare(None, wanted(plan, server))
    racer = dns.update.UpdateMessage(f"{zone}.", keyring=server.keyring(), keyname=KEY, keyalgorithm="hmac-sha256")
    racer.add(f"{zone}.", 1, "TXT", '"someone-else=1"')
    assert dns.query.tcp(racer, server.address, port=server.port, timeout=3).rcode() == 0
    before = rrsets(server, zone)
    with pytest.raises(ProviderError, match="changed between mailstack reading it and writing"):
        sync.apply(prepared)
    assert rrsets(server, zone) == before
    decided = provision.apply(wanted(plan, server), tmp_path / "records.json")  # planned again: fine
    assert decided.counts()["create"] == 5 and "someone-else=1" in asked(server, zone, "TXT")


def test_bind_gives_a_whole_set_the_ttl_of_a_record_added_to_it(bind) -> None:
    """Why a write into a shared set uses the set's TTL: BIND would otherwise change the
    TTL of the foreign records beside it (measured here, not assumed)."""
    _, server = bind
    zone = "ttlfact.test"
    assert rrsets(server, zone)[(zone, "TXT")][0] == 1
    update = dns.update.UpdateMessage(f"{zone}.", keyring=server.keyring(), keyname=KEY, keyalgorithm="hmac-sha256")
    update.add(f"{zone}.", 300, "TXT", '"added with another TTL"')
    assert dns.query.tcp(update, server.address, port=server.port, timeout=3).rcode() == 0
    assert rrsets(server, zone)[(zone, "TXT")][0] == 300, "every token at the apex now has TTL 300"


class DropReplies:
    """A TCP relay to BIND that forwards one message and never returns the answer:
    the server applies the update, the client cannot know."""

    def __init__(self, target: wire.Server) -> None:
        self.target = target
        self.listener = socket.create_server((target.address, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection, socket.create_connection((self.target.address, self.target.port), timeout=5) as upstream:
            length = connection.recv(2)
            body = b""
            while len(body) < int.from_bytes(length, "big"):
                body += connection.recv(65535)
            upstream.sendall(length + body)
            upstream.recv(65535)  # BIND has answered: it applied the update

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def test_an_update_whose_answer_is_lost_is_completed_without_duplicates(bind, tmp_path: Path) -> None:
    _, server = bind
    zone = "lostreply.test"
    plan = planned_for(stack_for(zone, tmp_path))
    journal = tmp_path / "records.json"
    start_serial = serial(server, zone)
    prepared = resource.prepare(None, wanted(plan, server))
    relay = DropReplies(server)
    try:
        with pytest.raises(ProviderError, match="closed the connection before answering: the update may or may not"):
            sync.apply(replace(prepared, server=replace(server, port=relay.port)))
    finally:
        relay.close()
    assert serial(server, zone) == start_serial + 1, "BIND applied the update"
    decided = provision.apply(wanted(plan, server), journal)
    assert not decided.changed and decided.counts()["adopt"] == 5
    assert serial(server, zone) == start_serial + 1
    assert_once(server, plan)


def test_an_apply_interrupted_between_zones_resumes_without_duplicates(tmp_path: Path) -> None:
    require_root()
    require_binary("named")
    secret = base64.b64encode(os.urandom(32)).decode()
    address = _address()
    bind = BindServer(tmp_path / "bind", address, free_port(address))
    bind.add_tsig_key(KEY, "hmac-sha256", secret)
    stack = stack_for("multi.test", tmp_path, "  mailstack:aliasDomains: [brand.example]\n")
    plan = planned_for(stack)
    assert plan.managed_zones == ("brand.example", "multi.test")
    bind.add_zone_file("multi.test", load_seed("multi.test", tmp_path).zone_text(), dynamic=True, update_key=KEY)
    bind.add_zone("brand.example", dynamic=True, update_key=KEY)
    server = wire.Server(address, bind.port, KEY, "hmac-sha256", secret)
    journal = tmp_path / "records.json"
    with bind:
        with pytest.raises(ProviderError, match="cannot reach|no answer"):
            provision.apply(wanted(plan, server), journal, after_zone=lambda zone: bind.kill())  # the server dies
        assert Journal.load(journal).pending and not Journal.load(journal).owned
        bind.restart()
        first = {k: v for k, v in rrsets(server, "brand.example").items()}
        assert any(t == "TXT" for _, t in first), "the first zone's update was applied before the crash"
        assert asked(server, "_dmarc.multi.test", "TXT") == [], "the second zone was not written"
        # meanwhile the plan lost the brand's DMARC: the journal knows the interrupted run wrote it
        changed = wanted(plan, server)
        changed["records"] = [r for r in changed["records"] if r["name"] != "_dmarc.brand.example"]  # type: ignore[attr-defined,union-attr]
        decided = provision.apply({**changed, "allowDelete": True}, journal)
        assert [(c.action.value, c.name) for c in decided.writes if c.name.endswith("brand.example")] == [("delete", "_dmarc.brand.example")]
        assert_once(server, plan, [r for r in plan.records if r.name != "_dmarc.brand.example"])
        assert asked(server, "_dmarc.brand.example", "TXT") == []
        assert not Journal.load(journal).pending
