"""The RFC 2136 provider's methods against a real BIND with a TSIG key and allow-update.

Each test calls the provider as the Pulumi engine would (check → create/update/delete,
read, diff) and then asks BIND directly, so a passing provider call that did not
change the server (or changed too much) fails the test.
"""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import dns.resolver
import pytest

from mailstack.core import txt
from mailstack.core.errors import ProviderError
from mailstack.lab.bind import BindServer
from mailstack.providers.rfc2136 import Rfc2136Provider
from tests.ports import free_port
from tests.servers import require_binary, require_root

#: Set by the ``bind`` fixture: an address of this engineer's range and a free port
#: (the suite may run in several sessions at once; BIND binds with SO_REUSEPORT).
ADDRESS = "127.0.40.1"
PORT = 0
ZONE = "lab.example"
KEY = "mailstack-test"
LONG_DKIM = "v=DKIM1; k=rsa; p=" + "A" * 380  # > 255 bytes: two character-strings


@pytest.fixture
def bind(tmp_path: Path):
    require_root()
    require_binary("named")
    secret = base64.b64encode(os.urandom(32)).decode()
    global ADDRESS, PORT
    ADDRESS = f"127.0.40.{random.randint(100, 199)}"
    PORT = free_port(ADDRESS)
    server = BindServer(tmp_path / "bind", ADDRESS, PORT)
    server.add_tsig_key(KEY, "hmac-sha256", secret)
    server.add_zone(
        ZONE,
        extra_lines=['foreign 300 IN TXT "written by someone else"', "www 300 IN CNAME web.lab.example."],
        dynamic=True,
    )
    server.add_zone("static.example", extra_lines=['@ 300 IN TXT "static"'])
    with server:
        yield server, secret


def props(secret: str, name: str, rdtype: str, values: list[str], **extra: Any) -> dict[str, Any]:
    base = {
        "server": ADDRESS,
        "port": PORT,
        "zone": ZONE,
        "name": name,
        "type": rdtype,
        "ttl": 300,
        "values": values,
        "tsigKeyName": KEY,
        "tsigAlgorithm": "hmac-sha256",
        "tsigSecret": secret,
        "__provider": "(serialized provider)",
    }
    base.update(extra)
    return base


def checked(olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    result = Rfc2136Provider().check(olds, news)
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    return result.inputs


def live(name: str, rdtype: str) -> list[str] | None:
    """What BIND serves, asked directly (no provider code)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [ADDRESS]
    resolver.port = PORT
    resolver.lifetime = 3
    try:
        answer = resolver.resolve(name, rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return sorted(r.to_text() for r in answer)


def test_create_read_update_delete(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    inputs = checked({}, props(secret, "Mail.Lab.Example.", "mx", ["10 mx1.example.net", "20 mx2.example.net."]))
    assert inputs["name"] == "mail.lab.example" and inputs["type"] == "MX"

    created = provider.create(inputs)
    assert created.id == "mail.lab.example/MX@lab.example"
    assert created.outs["values"] == ["10 mx1.example.net.", "20 mx2.example.net."]
    assert created.outs["tsigSecret"] == secret  # full state, kept secret by the resource
    assert live("mail.lab.example", "MX") == ["10 mx1.example.net.", "20 mx2.example.net."]

    state = {**created.outs, "__provider": "(serialized provider)"}
    assert provider.read(created.id, state).outs["values"] == created.outs["values"]

    news = checked(state, props(secret, "mail.lab.example", "MX", ["10 mx1.example.net."], ttl=600))
    diff = provider.diff(created.id, state, news)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, state, news)
    assert updated.outs["values"] == ["10 mx1.example.net."] and updated.outs["ttl"] == 600
    assert live("mail.lab.example", "MX") == ["10 mx1.example.net."]

    provider.delete(created.id, {**updated.outs, "__provider": "x"})
    assert live("mail.lab.example", "MX") is None
    assert live("foreign.lab.example", "TXT") == ['"written by someone else"']
    assert provider.read(created.id, {**updated.outs, "__provider": "x"}).id == ""


def test_long_txt_is_sent_as_255_byte_strings(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    inputs = checked({}, props(secret, "sel._domainkey.lab.example", "TXT", [txt.quoted(LONG_DKIM)]))
    provider.create(inputs)
    query = dns.message.make_query("sel._domainkey.lab.example", "TXT")
    answer = dns.query.tcp(query, ADDRESS, port=PORT, timeout=3).answer[0]
    strings = [s for rdata in answer for s in rdata.strings]
    assert [len(s) for s in strings] == [255, len(LONG_DKIM) - 255]
    assert b"".join(strings).decode() == LONG_DKIM


def test_diff_replaces_on_name_or_type_and_is_quiet_on_spelling(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    old = checked({}, props(secret, "t.lab.example", "TXT", [txt.quoted("v=spf1 -all")]))
    same = checked(old, props(secret, "T.lab.example.", "txt", ['"v=spf1" " -all"']))
    assert provider.diff("id", old, same).changes is False
    renamed = checked(old, props(secret, "u.lab.example", "TXT", [txt.quoted("v=spf1 -all")]))
    diff = provider.diff("id", old, renamed)
    assert diff.changes and diff.replaces == ["name"] and diff.delete_before_replace
    retyped = checked(old, props(secret, "t.lab.example", "CNAME", ["x.lab.example."]))
    assert provider.diff("id", old, retyped).replaces == ["type"]


def test_check_rejects_bad_inputs_without_echoing_the_secret(bind) -> None:
    secret = "not base64 !!!"
    result = Rfc2136Provider().check(
        {}, props(secret, "x.other.example", "BOGUS", ["1.2.3.4"], ttl=5, tsigAlgorithm="md5")
    )
    reasons = {f.property: f.reason for f in result.failures}
    assert set(reasons) == {"name", "type", "ttl", "tsigAlgorithm", "tsigSecret"}
    assert all(secret not in reason for reason in reasons.values())
    bad_value = Rfc2136Provider().check({}, props("c2VjcmV0", "x.lab.example", "A", ["not-an-ip"]))
    assert [f.property for f in bad_value.failures] == ["values"]


def test_create_never_clobbers_a_foreign_record_set(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    inputs = checked({}, props(secret, "foreign.lab.example", "TXT", ['"ours"']))
    with pytest.raises(ProviderError, match="already exists .* mailstack did not write"):
        provider.create(inputs)
    assert live("foreign.lab.example", "TXT") == ['"written by someone else"']
    # a TXT beside a foreign CNAME would be silently dropped by BIND: refused instead
    with pytest.raises(ProviderError, match="YXRRSET|left untouched"):
        provider.create(checked({}, props(secret, "www.lab.example", "TXT", ['"x"'])))
    assert live("www.lab.example", "CNAME") == ["web.lab.example."]


def test_create_adopts_an_identical_record_set(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    inputs = checked({}, props(secret, "foreign.lab.example", "TXT", ['"written by someone else"']))
    assert provider.create(inputs).outs["values"] == ['"written by someone else"']


def test_update_and_delete_refuse_when_someone_changed_the_set(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    state = provider.create(checked({}, props(secret, "drift.lab.example", "TXT", ['"v1"']))).outs
    # someone else edits the set behind mailstack's back
    other = checked({}, props(secret, "drift.lab.example", "TXT", ['"edited by hand"']))
    provider.update("id", state, other)
    news = checked(state, props(secret, "drift.lab.example", "TXT", ['"v2"']))
    with pytest.raises(ProviderError, match="NXRRSET"):
        provider.update("id", state, news)
    with pytest.raises(ProviderError, match="NXRRSET"):
        provider.delete("id", state)
    assert live("drift.lab.example", "TXT") == ['"edited by hand"']


def test_delete_of_an_already_deleted_set_succeeds(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    state = provider.create(checked({}, props(secret, "gone.lab.example", "A", ["127.0.40.9"]))).outs
    provider.delete("id", state)
    provider.delete("id", state)
    assert live("gone.lab.example", "A") is None


def test_tsig_mismatch_fails_clearly_and_changes_nothing(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    wrong = base64.b64encode(os.urandom(32)).decode()
    inputs = checked({}, props(wrong, "mismatch.lab.example", "TXT", ['"x"']))
    with pytest.raises(ProviderError) as caught:
        provider.create(inputs)
    message = str(caught.value)
    assert "BADSIG" in message and "tsigSecret" in message
    assert wrong not in message and secret not in message
    unknown_key = checked({}, props(secret, "mismatch.lab.example", "TXT", ['"x"'], tsigKeyName="nobody"))
    with pytest.raises(ProviderError, match="BADKEY"):
        provider.create(unknown_key)
    assert live("mismatch.lab.example", "TXT") is None


def test_a_zone_the_server_does_not_serve_or_update_is_refused(bind) -> None:
    _, secret = bind
    provider = Rfc2136Provider()
    static = checked({}, props(secret, "static.example", "MX", ["10 mx.static.example."], zone="static.example"))
    with pytest.raises(ProviderError, match="REFUSED"):
        provider.create(static)
    assert live("static.example", "MX") is None
    elsewhere = checked({}, props(secret, "nowhere.example", "TXT", ['"x"'], zone="nowhere.example"))
    with pytest.raises(ProviderError, match=r"refused to answer \(REFUSED\): it does not serve that zone"):
        provider.create(elsewhere)


def test_unreachable_server_is_a_clear_error() -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    port = free_port(ADDRESS)  # nothing listens there
    inputs = checked({}, props(secret, "x.lab.example", "TXT", ['"x"'], port=port))
    with pytest.raises(ProviderError, match=f"cannot reach {ADDRESS}:{port}"):
        Rfc2136Provider().create(inputs)
