"""The RFC 2136 provider's methods against a real BIND with a TSIG key, allow-update and
allow-transfer: one resource holding a stack's records, planned against the live zone.

Each test calls the provider as the Pulumi engine would (check → create/update/delete,
read, diff) and then asks BIND directly with dnspython's resolver, so a passing provider
call that did not change the server (or changed too much) fails the test. Every zone
holds records mailstack does not own (a verification token at the apex, a web CNAME).
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.resolver
import dns.update
import pytest
from pulumi.runtime import rpc

from mailstack.core import txt
from mailstack.core.errors import ProviderError
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from mailstack.providers.rfc2136 import Rfc2136Provider
from mailstack.rfc2136 import wire
from tests.ports import free_port
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

KEY = "mailstack-test"
LONG_DKIM = "v=DKIM1; k=rsa; p=" + "A" * 380  # > 255 bytes: two character-strings
FOREIGN = ['@ 300 IN TXT "google-site-verification=keep-me"', "www 300 IN CNAME web.example.net."]
ZONES = ("crud.example", "conflict.example", "unknown.example", "drift.example", "long.example", "tsig.example")


class Bind:
    """The module's server: address, port, secret."""

    address = ""
    port = 0
    secret = ""


@pytest.fixture(scope="module", autouse=True)
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    require_root()
    require_binary("named")
    free = [f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")]
    Bind.address = random.choice(free)
    Bind.port = free_port(Bind.address)
    Bind.secret = base64.b64encode(os.urandom(32)).decode()
    server = BindServer(tmp_path_factory.mktemp("provider") / "bind", Bind.address, Bind.port)
    server.add_tsig_key(KEY, "hmac-sha256", Bind.secret)
    for zone in ZONES:
        extra = [*FOREIGN, '@ 300 IN TXT "v=spf1 include:_spf.google.com ~all"'] if zone == "conflict.example" else FOREIGN
        extra = [*extra, 'sel._domainkey 300 IN TXT "v=DKIM1; k=rsa; p=MIIBforeign"'] if zone == "unknown.example" else extra
        server.add_zone(zone, extra_lines=extra, dynamic=True)
    server.add_zone("static.example", extra_lines=['@ 300 IN TXT "static"'])
    with server:
        yield


def rec(zone: str, name: str, rdtype: str, value: Any, ttl: int = 300) -> dict[str, Any]:
    return {"zone": zone, "name": name, "type": rdtype, "ttl": ttl, "value": value}


def props(zone: str, records: list[dict[str, Any]], *, secret: str | None = None, **extra: Any) -> dict[str, Any]:
    base = {
        "server": Bind.address, "port": Bind.port, "zones": [zone], "records": records,
        "tsigKeyName": KEY, "tsigAlgorithm": "hmac-sha256", "tsigSecret": secret or Bind.secret,
        "adopt": {}, "allowDelete": False, "__provider": "(serialized provider)",
    }
    base.update(extra)
    return base


def checked(olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    result = Rfc2136Provider().check(olds, news)
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    return result.inputs


def live(name: str, rdtype: str) -> list[str]:
    """What BIND serves, asked directly (no provider code)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [Bind.address], Bind.port, 3
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def zone_now(zone: str) -> dict[tuple[str, str], tuple[int, frozenset[bytes]]]:
    server = wire.Server(Bind.address, Bind.port, KEY, "hmac-sha256", Bind.secret)
    return {k: (t, frozenset(r.to_wire() for r in rd)) for k, (t, rd) in wire.transfer(server, zone).rrsets.items()}


def test_create_read_update_delete_owning_single_records_beside_foreign_ones() -> None:
    zone = "crud.example"
    provider = Rfc2136Provider()
    news = props(zone, [rec(zone, "Crud.Example.", "txt", '"v=spf1" " -all"'), rec(zone, "crud.example", "MX", "10 mx1.example.net")])
    inputs = checked({}, news)
    assert inputs["records"][0]["name"] == "crud.example" and inputs["records"][0]["value"] == '"v=spf1 -all"'
    created = provider.create(inputs)
    assert created.id == f"{zone}@{Bind.address}:{Bind.port}"
    assert created.outs["tsigSecret"] == Bind.secret  # full state, kept secret by the resource
    assert live(zone, "TXT") == ['"google-site-verification=keep-me"', '"v=spf1 -all"']
    assert live(zone, "MX") == ["10 mx1.example.net."]

    state = {**created.outs, "__provider": "(serialized provider)"}
    assert provider.read(created.id, state).outs["records"] == created.outs["records"]
    assert provider.diff(created.id, state, checked(state, news)).changes is False

    changed = checked(state, props(zone, [rec(zone, zone, "TXT", '"v=spf1 mx -all"'), rec(zone, zone, "MX", "10 mx1.example.net", ttl=600),
                                          rec(zone, f"mail.{zone}", "A", "192.0.2.25")]))
    diff = provider.diff(created.id, state, changed)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, state, changed)
    assert live(zone, "TXT") == ['"google-site-verification=keep-me"', '"v=spf1 mx -all"'], "one SPF, replaced in place"
    assert live(f"mail.{zone}", "A") == ["192.0.2.25"]
    assert provider.diff(created.id, updated.outs, props(zone, changed["records"], port="53")).replaces == ["port"]

    gone = {**updated.outs, "__provider": "x"}
    provider.delete(created.id, gone)
    assert live(zone, "TXT") == ['"google-site-verification=keep-me"'] and live(zone, "MX") == []
    assert live(f"www.{zone}", "CNAME") == ["web.example.net."]
    assert provider.read(created.id, gone).id == ""
    provider.delete(created.id, gone)  # already gone is fine


def test_check_fails_the_preview_on_a_conflict_and_writes_nothing() -> None:
    zone = "conflict.example"
    before = zone_now(zone)
    news = props(zone, [rec(zone, zone, "TXT", '"v=spf1 ip4:192.0.2.10 -all"'), rec(zone, f"_dmarc.{zone}", "TXT", '"v=DMARC1; p=reject"'),
                        rec(zone, f"www.{zone}", "TXT", '"v=spf1 -all"')])
    result = Rfc2136Provider().check({}, news)
    reasons = [f.reason for f in result.failures]
    assert {f.property for f in result.failures} == {"records"} and len(reasons) == 2
    assert any("conflict.example TXT 'v=spf1 include:_spf.google.com ~all' is not mailstack's" in r and "dns.adopt" in r
               and "remove it from the zone" in r for r in reasons)
    assert any("www.conflict.example is a CNAME to web.example.net" in r for r in reasons)
    assert Bind.secret not in " ".join(reasons)
    with pytest.raises(ProviderError, match="2 conflict"):
        Rfc2136Provider().create(result.inputs)
    assert zone_now(zone) == before and live(f"_dmarc.{zone}", "TXT") == []
    # declared: mailstack takes the old SPF over (the CNAME name is dropped from the plan)
    adopting = props(zone, news["records"][:2], adopt={f"txt-{zone}": "v=spf1 include:_spf.google.com ~all"})
    Rfc2136Provider().create(checked({}, adopting))
    assert live(zone, "TXT") == ['"google-site-verification=keep-me"', '"v=spf1 ip4:192.0.2.10 -all"']


def test_a_value_unknown_at_preview_is_judged_by_its_role() -> None:
    zone = "unknown.example"
    news = props(zone, [rec(zone, f"sel._domainkey.{zone}", "TXT", rpc.UNKNOWN), rec(zone, zone, "TXT", '"v=spf1 -all"')])
    result = Rfc2136Provider().check({}, news)
    [failure] = result.failures
    assert "a DKIM key that is not mailstack's is live at the selector" in failure.reason
    fresh = props(zone, [rec(zone, f"new._domainkey.{zone}", "TXT", rpc.UNKNOWN)])
    assert Rfc2136Provider().check({}, fresh).failures == []


def test_diff_sees_a_record_removed_by_hand_and_update_puts_it_back() -> None:
    zone = "drift.example"
    provider = Rfc2136Provider()
    news = checked({}, props(zone, [rec(zone, zone, "TXT", '"v=spf1 -all"'), rec(zone, f"_dmarc.{zone}", "TXT", '"v=DMARC1; p=none"')]))
    state = provider.create(news).outs
    by_hand = dns.update.UpdateMessage(f"{zone}.", keyring=wire.Server(Bind.address, Bind.port, KEY, "hmac-sha256", Bind.secret).keyring(),
                                       keyname=KEY, keyalgorithm="hmac-sha256")
    by_hand.delete(f"_dmarc.{zone}.", "TXT")
    assert dns.query.tcp(by_hand, Bind.address, port=Bind.port, timeout=3).rcode() == 0
    assert provider.diff("id", state, checked(state, news)).changes is True
    assert provider.read("id", state).outs["records"] == [r for r in state["records"] if r["name"] == zone]
    provider.update("id", state, news)
    assert live(f"_dmarc.{zone}", "TXT") == ['"v=DMARC1; p=none"']


def test_long_txt_is_sent_as_255_byte_strings() -> None:
    zone = "long.example"
    Rfc2136Provider().create(checked({}, props(zone, [rec(zone, f"sel._domainkey.{zone}", "TXT", txt.quoted(LONG_DKIM))])))
    answer = dns.query.tcp(dns.message.make_query(f"sel._domainkey.{zone}", "TXT"), Bind.address, port=Bind.port, timeout=3).answer[0]
    strings = [s for rdata in answer for s in rdata.strings]
    assert [len(s) for s in strings] == [255, len(LONG_DKIM) - 255] and b"".join(strings).decode() == LONG_DKIM


def test_check_rejects_bad_inputs_without_echoing_the_secret() -> None:
    secret = "not base64 !!!"
    bad = props("crud.example", [rec("other.example", "x.other.example", "BOGUS", "1.2.3.4", ttl=5),
                                 rec("crud.example", "a.crud.example", "A", "not-an-ip"), "junk"],
                secret=secret, tsigAlgorithm="md5", port=70000)
    result = Rfc2136Provider().check({}, bad)
    reasons = [(f.property, f.reason) for f in result.failures]
    assert {p for p, _ in reasons} == {"port", "records", "tsigAlgorithm", "tsigSecret"}
    text = " ".join(r for _, r in reasons)
    assert "zone other.example is not one of the resource's zones" in text and "'BOGUS' is not one of" in text
    assert "'not-an-ip' is not a valid A value" in text and "is not a {zone, name, type, ttl, value} record" in text
    assert secret not in text
    missing = Rfc2136Provider().check({}, {"server": Bind.address})
    assert {f.property for f in missing.failures} >= {"records", "zones", "tsigSecret"}


def test_tsig_mismatch_fails_clearly_and_changes_nothing() -> None:
    zone = "tsig.example"
    wrong = base64.b64encode(os.urandom(32)).decode()
    records = [rec(zone, f"x.{zone}", "TXT", '"x"')]
    with pytest.raises(ProviderError) as caught:
        Rfc2136Provider().create(props(zone, records, secret=wrong))
    message = str(caught.value)
    assert "BADSIG" in message and "tsigSecret" in message and wrong not in message and Bind.secret not in message
    failure = Rfc2136Provider().check({}, props(zone, records, secret=wrong)).failures
    assert len(failure) == 1 and "cannot plan against the live zones" in failure[0].reason and "BADSIG" in failure[0].reason
    with pytest.raises(ProviderError, match="BADKEY"):
        Rfc2136Provider().create(props(zone, records, tsigKeyName="nobody"))
    assert live(f"x.{zone}", "TXT") == []


def test_a_zone_the_key_may_not_transfer_or_the_server_does_not_serve_is_refused() -> None:
    static = props("static.example", [rec("static.example", "static.example", "MX", "10 mx.static.example.")])
    with pytest.raises(ProviderError, match=r'refused the zone transfer \(REFUSED\).*allow-transfer \{ key "mailstack-test"; \}'):
        Rfc2136Provider().create(static)
    assert live("static.example", "MX") == []
    with pytest.raises(ProviderError, match="refused the zone transfer"):
        Rfc2136Provider().create(props("nowhere.example", [rec("nowhere.example", "nowhere.example", "TXT", '"x"')]))


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port(Bind.address)  # nothing listens there
    with pytest.raises(ProviderError, match=f"cannot reach {Bind.address}:{port}"):
        Rfc2136Provider().create(props("crud.example", [rec("crud.example", "crud.example", "TXT", '"x"')], port=port))


def test_a_create_interrupted_between_zones_is_completed_by_the_engines_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine keeps no state for a failed create and calls create again on the next
    `pulumi up`: the zone written before the crash reads back as planned (adopted), the
    other is written, each record once."""
    address = random.choice([f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")])
    server = BindServer(tmp_path / "bind", address, free_port(address))
    server.add_tsig_key(KEY, "hmac-sha256", Bind.secret)
    server.add_zone("first.example", extra_lines=FOREIGN, dynamic=True)
    server.add_zone("second.example", dynamic=True)
    records = [rec("first.example", "first.example", "TXT", '"v=spf1 -all"'), rec("second.example", "second.example", "TXT", '"v=spf1 -all"'),
               rec("second.example", "_dmarc.second.example", "TXT", '"v=DMARC1; p=none"')]
    news = props("first.example", records, zones=["first.example", "second.example"], server=address, port=server.port)
    real_send = wire.send

    def send_then_crash(*args: Any) -> None:
        real_send(*args)
        server.kill()  # the primary dies right after the first zone's update

    with server:
        inputs = checked({}, news)
        monkeypatch.setattr(wire, "send", send_then_crash)
        with pytest.raises(ProviderError, match="cannot reach|no answer"):
            Rfc2136Provider().create(inputs)
        monkeypatch.setattr(wire, "send", real_send)
        server.restart()
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = [address], server.port, 3
        assert [r.to_text() for r in resolver.resolve("first.example", "TXT") if "spf" in r.to_text()] == ['"v=spf1 -all"']
        with pytest.raises(dns.resolver.NoAnswer):
            resolver.resolve("second.example", "TXT")
        Rfc2136Provider().create(inputs)  # the retry
        assert sorted(r.to_text() for r in resolver.resolve("first.example", "TXT")) == ['"google-site-verification=keep-me"', '"v=spf1 -all"']
        assert [r.to_text() for r in resolver.resolve("second.example", "TXT")] == ['"v=spf1 -all"']
        assert [r.to_text() for r in resolver.resolve("_dmarc.second.example", "TXT")] == ['"v=DMARC1; p=none"']
