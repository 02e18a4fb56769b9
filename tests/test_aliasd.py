"""mailstack-aliasd: what it answers, when it asks Odoo, and the socketmap protocol.

The decisions are tested with a fake clock and fetcher; the fetch itself against the
Odoo stand-in's models (in process), the protocol over a real TCP socket on
127.0.113.0/24, and the whole with a real Postfix in tests/test_gateway_live.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.gateway import aliasd
from tests.odoo_fixtures import OdooHarness, sink  # noqa: F401 - fixture
from tests.ports import free_port

ADDRESS = "127.0.113.40"
STATIC = frozenset({"sales@example.net", "legacy@example.net", "catchall@example.net"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """Odoo as aliasd sees it: a set of addresses, or unreachable."""

    def __init__(self, known: set[str]) -> None:
        self.known, self.up, self.calls = known, True, 0

    def __call__(self, config: aliasd.Config) -> frozenset[str]:
        self.calls += 1
        if not self.up:
            raise aliasd.Unreachable("ConnectionRefusedError: [Errno 111] Connection refused")
        return frozenset(self.known)


def make(fetcher: Fetcher, clock: Clock, **kwargs: object) -> aliasd.Aliases:
    config = aliasd.Config(listen=(ADDRESS, 0), domains=("example.net",), static=STATIC, **kwargs)  # type: ignore[arg-type]
    return aliasd.Aliases(config, fetcher, clock)


def test_odoo_decides_while_it_answers() -> None:
    fetcher, clock = Fetcher({"sales@example.net", "new@example.net"}), Clock()
    aliases = make(fetcher, clock)
    assert aliases.decide("Sales@Example.NET") == ("OK", "")
    assert aliases.decide("new@example.net") == ("OK", "")
    assert aliases.decide("legacy@example.net") == ("NOTFOUND", "")  # declared, but Odoo has no such alias
    assert aliases.decide("sales+tag@example.net") == ("NOTFOUND", "")
    assert fetcher.calls == 1


def test_a_new_alias_is_seen_on_the_first_miss_after_ten_seconds_and_odoo_is_asked_at_most_that_often() -> None:
    fetcher, clock = Fetcher({"sales@example.net"}), Clock()
    aliases = make(fetcher, clock)
    aliases.decide("sales@example.net")
    fetcher.known.add("quotes@example.net")
    clock.now += 5
    assert aliases.decide("quotes@example.net") == ("NOTFOUND", "")
    for n in range(50):  # a dictionary attack within the same 10 s
        aliases.decide(f"guess{n}@example.net")
    assert fetcher.calls == 1
    clock.now += 5
    assert aliases.decide("quotes@example.net") == ("OK", "")
    assert fetcher.calls == 2


def test_the_answer_is_renewed_after_refresh_so_a_removed_alias_goes() -> None:
    fetcher, clock = Fetcher({"sales@example.net", "old@example.net"}), Clock()
    aliases = make(fetcher, clock)
    assert aliases.decide("old@example.net") == ("OK", "")
    fetcher.known.discard("old@example.net")
    clock.now += 59
    assert aliases.decide("old@example.net") == ("OK", "")
    clock.now += 1
    assert aliases.decide("old@example.net") == ("NOTFOUND", "")


def test_odoo_unreachable_accepts_what_is_certainly_wanted_and_defers_the_rest() -> None:
    fetcher, clock = Fetcher({"sales@example.net", "live@example.net"}), Clock()
    aliases = make(fetcher, clock)
    aliases.decide("sales@example.net")
    fetcher.up = False
    clock.now += 61
    assert aliases.decide("legacy@example.net") == ("OK", "")  # static list
    assert aliases.decide("live@example.net") == ("OK", "")  # Odoo's last answer
    status, reason = aliases.decide("nobody@example.net")
    assert status == "TEMP" and reason.startswith("4.3.0 ")
    fetcher.up = True
    clock.now += 10
    assert aliases.decide("nobody@example.net") == ("NOTFOUND", "")


def test_never_asked_and_unreachable_is_never_accept_all() -> None:
    fetcher, clock = Fetcher(set()), Clock()
    fetcher.up = False
    aliases = make(fetcher, clock)
    assert aliases.decide("sales@example.net") == ("OK", "")
    assert aliases.decide("random@example.net")[0] == "TEMP"


def test_static_source() -> None:
    fetcher, clock = Fetcher(set()), Clock()
    static = make(fetcher, clock, source="static")
    assert static.decide("sales@example.net") == ("OK", "") and static.decide("x@example.net") == ("NOTFOUND", "")
    assert fetcher.calls == 0


def test_routed_mirrors_odoo_17(tmp_path: Path, sink) -> None:  # noqa: F811
    odoo = OdooHarness(tmp_path / "odoo.sqlite3", sink.port, aliases=("sales@example.net", "support@example.net"))
    lead = odoo.call("ir.model", "search", [["model", "=", "crm.lead"]])[0]
    odoo.call("mail.alias", "create", {"alias_name": "everywhere", "alias_model_id": lead, "alias_incoming_local": True})
    odoo.call("mail.alias", "create", {"alias_name": False, "alias_model_id": lead})  # an inactive alias
    aliases = odoo.call("mail.alias", "search_read", [["alias_name", "!=", False]], fields=["alias_name", "alias_full_name", "alias_incoming_local"])
    domains = odoo.call("mail.alias.domain", "search_read", [], fields=["bounce_email", "catchall_email"])
    assert aliasd.routed(aliases, domains, ["example.net", "example.org"]) == {
        "sales@example.net", "support@example.net", "everywhere@example.net", "everywhere@example.org",
        "bounce@example.net", "catchall@example.net", "postmaster@example.net", "postmaster@example.org", "abuse@example.net", "abuse@example.org",
    }


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    config = aliasd.Config(listen=(ADDRESS, free_port(ADDRESS)), domains=("example.net",), static=STATIC, source="static")
    running = aliasd.serve(config)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running.server_address[0], running.server_address[1]
    finally:
        running.shutdown()
        running.server_close()


def ask(sock: socket.socket, text: str) -> str:
    sock.sendall(aliasd.netstring(text))
    data = b""
    while not data.endswith(b","):
        data += sock.recv(4096)
    length, _, rest = data.partition(b":")
    assert int(length) == len(rest) - 1
    return rest[:-1].decode()


def test_the_socketmap_protocol(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        assert ask(sock, "odoo sales@example.net") == "OK OK"
        assert ask(sock, "odoo nobody@example.net") == "NOTFOUND "
        assert ask(sock, "other x@example.net").startswith("PERM ")
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"99999999:odoo x,")  # oversized: the connection is dropped, the server lives on
        assert sock.recv(10) == b""
    with socket.create_connection(server, timeout=5) as sock:
        assert ask(sock, "odoo legacy@example.net") == "OK OK"


def test_config_file(tmp_path: Path) -> None:
    static = tmp_path / "relay_recipients"
    static.write_text("# Recipients\nsales@example.net\tOK\n")
    password = tmp_path / "pw"
    password.write_text("secret\n")
    password.chmod(0o644)
    conf = tmp_path / "aliasd.conf"
    conf.write_text(f"[aliasd]\nlisten = 127.0.113.40:10027\ndomains = example.net\nstatic_file = {static}\nsource = odoo\n"
                    f"url = http://127.0.113.41:8069\ndatabase = odoo\nlogin = admin\npassword_file = {password}\n")
    with pytest.raises(SystemExit, match="accessible to others"):
        aliasd.load_config(str(conf))
    password.chmod(0o600)
    config = aliasd.load_config(str(conf))
    assert config.static == {"sales@example.net"} and config.login == "admin" and config.password == "secret"
    assert config.listen == ("127.0.113.40", 10027) and config.refresh == 60.0
    assert "secret" not in repr(config)
