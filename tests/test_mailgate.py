"""mailstack-mailgate: exit codes per failure class, byte-exact delivery, no secret leaks.

The mailgate runs as a real process against real Odoo stand-in processes on loopback
(127.0.20.60, free ports chosen by the kernel so parallel runs never collide), each
behaving one way.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.gateway import mailgate
from mailstack.lab.odoo import OdooStandIn

ADDRESS = "127.0.20.60"
PASSWORD = "pw-Zq81-never-shown"
ALIASES = ["sales@example.net"]
BEHAVIOURS = ("ok", "transient", "http-500", "garbage", "crash", "slow:30")

RAW = (
    b"Delivered-To: sales@example.net\nFrom: a@outside.test\nTo: sales@example.net\n"
    b"Message-Id: <mg-{n}@outside.test>\nSubject: bytes\n\nline with CRLF\r\n"
    b"8bit \xc3\xa4 and invalid utf-8 \xff\xfe\nno final newline"
)


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused, and no parallel
    run can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OdooStandIn]]:
    servers: dict[str, OdooStandIn] = {}
    try:
        for behaviour in BEHAVIOURS:
            server = OdooStandIn(tmp_path_factory.mktemp(f"odoo-{behaviour.replace(':', '-')}"), ADDRESS, 0,
                                 database="odoo", password=PASSWORD, aliases=ALIASES, behaviour=behaviour)
            server.start()
            servers[behaviour] = server
            URLS[behaviour] = server.url  # the port it bound
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "odoo-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


_counter = iter(range(1, 10000))


def run(url: str, password_file: Path, *extra: str, raw: bytes | None = None,
        recipient: str = "sales@example.net") -> subprocess.CompletedProcess[bytes]:
    message = raw if raw is not None else RAW.replace(b"{n}", str(next(_counter)).encode())
    command = [sys.executable, "-m", "mailstack.gateway.mailgate", "--url", url, "--database", "odoo",
               "--password-file", str(password_file), "--recipient", recipient, *extra]
    if "--uid" not in extra and "--login" not in extra:
        command += ["--uid", "2"]
    result = subprocess.run(command, input=message, capture_output=True, cwd=Path(__file__).resolve().parent.parent)
    assert PASSWORD.encode() not in result.stderr and PASSWORD.encode() not in result.stdout
    return result


URLS: dict[str, str] = {}


def url(behaviour: str) -> str:
    return URLS[behaviour]


def test_delivers_byte_for_byte(standins: dict[str, OdooStandIn], password_file: Path) -> None:
    raw = RAW.replace(b"{n}", b"exact")
    result = run(url("ok"), password_file, raw=raw)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    stored = [m for m in standins["ok"].messages() if m["message_id"] == "<mg-exact@outside.test>"]
    assert len(stored) == 1 and stored[0]["raw"] == b"Delivered-To: sales@example.net\n" + raw


def test_every_envelope_recipient_becomes_a_delivered_to_line(standins: dict[str, OdooStandIn], password_file: Path) -> None:
    raw = RAW.replace(b"{n}", b"multi").replace(b"Delivered-To: sales@example.net\n", b"").replace(b"To: sales@", b"To: other@")
    result = run(url("ok"), password_file, "--recipient", "support@example.net", "sales+x@example.net", raw=raw)
    assert result.returncode == 0, result.stderr
    stored = [m for m in standins["ok"].messages() if m["message_id"] == "<mg-multi@outside.test>"]
    assert stored[0]["raw"] == (
        b"Delivered-To: sales@example.net\nDelivered-To: support@example.net\nDelivered-To: sales+x@example.net\n" + raw
    )
    # Odoo 17 routes on the full address: sales@ is an alias, sales+x@ and support@ are not.
    assert stored[0]["routes"] == "sales@example.net"


def test_what_odoo_handles_itself_is_delivered_never_bounced_again(standins: dict[str, OdooStandIn], password_file: Path) -> None:
    """Odoo answers False (it bounced a direct write to the catchall itself) or the
    None fault (its loop detection): the mailgate exits 0, so Postfix adds no bounce."""
    catchall = RAW.replace(b"{n}", b"catchall").replace(b"sales@example.net", b"catchall@example.net")
    result = run(url("ok"), password_file, raw=catchall, recipient="catchall@example.net")
    assert result.returncode == mailgate.EX_OK and result.stderr == b""
    looping = RAW.replace(b"{n}", b"loop").replace(
        b"Subject: bytes\n", b"References: <1.2-openerp-loop-detection-bounce-email@odoo.test>\nSubject: bytes\n")
    result = run(url("ok"), password_file, raw=looping)
    assert result.returncode == mailgate.EX_OK
    assert result.stderr.startswith(b"2.0.0 mailstack-mailgate for <sales@example.net>: Odoo's loop detection handled the message")
    assert not [m for m in standins["ok"].messages() if m["message_id"] in ("<mg-catchall@outside.test>", "<mg-loop@outside.test>")]


def test_a_recipient_cannot_inject_headers(password_file: Path, refused_port: int) -> None:
    result = run(f"http://{ADDRESS}:{refused_port}", password_file, "--recipient", "a@b.test\nBcc: x@y.test")
    assert result.returncode == mailgate.EX_CONFIG


def test_login_authenticates_first(standins: dict[str, OdooStandIn], password_file: Path) -> None:
    assert run(url("ok"), password_file, "--login", "admin").returncode == mailgate.EX_OK
    result = run(url("ok"), password_file, "--login", "intruder")
    assert result.returncode == mailgate.EX_NOPERM and result.stderr.startswith(b"5.7.0 ")


def test_config_file_is_read(standins: dict[str, OdooStandIn], password_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "mailgate.conf"
    config.write_text(f"[mailgate]\nurl = {url('ok')}\ndatabase = odoo\nuid = 2\npassword_file = {password_file}\ntimeout = 10\n")
    result = subprocess.run([sys.executable, "-m", "mailstack.gateway.mailgate", "--config", str(config)],
                            input=RAW.replace(b"{n}", b"conf"), capture_output=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("case", "expected", "status"),
    [
        ("no-route", mailgate.EX_NOUSER, b"5.1.1"),
        ("wrong-password", mailgate.EX_NOPERM, b"5.7.0"),
        ("missing-database", mailgate.EX_CONFIG, b"4.3.5"),
        ("transient", mailgate.EX_TEMPFAIL, b"4.3.0"),
        ("http-500", mailgate.EX_TEMPFAIL, b"4.3.0"),
        ("garbage", mailgate.EX_TEMPFAIL, b"4.3.0"),
        ("crash", mailgate.EX_SOFTWARE, b"5.3.0"),
        ("timeout", mailgate.EX_TEMPFAIL, b"4.3.0"),
        ("down", mailgate.EX_TEMPFAIL, b"4.3.0"),
        ("wrong-path", mailgate.EX_CONFIG, b"4.3.5"),
    ],
)
def test_exit_code_per_failure_class(standins: dict[str, OdooStandIn], password_file: Path, tmp_path: Path,
                                     refused_port: int, case: str, expected: int, status: bytes) -> None:
    target, extra, raw, recipient = url("ok"), [], None, "sales@example.net"
    if case == "no-route":
        raw = RAW.replace(b"sales@", b"nobody@").replace(b"{n}", b"noroute")
        recipient = "nobody@example.net"
    elif case == "wrong-password":
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password")
        wrong.chmod(0o600)
        password_file = wrong
    elif case == "missing-database":
        extra = ["--database", "nope"]
    elif case in ("transient", "http-500", "garbage", "crash"):
        target = url(case)
    elif case == "timeout":
        target, extra = url("slow:30"), ["--timeout", "1"]
    elif case == "down":
        target = f"http://{ADDRESS}:{refused_port}"
    elif case == "wrong-path":
        target = url("ok") + "/odoo"
    result = run(target, password_file, *extra, raw=raw, recipient=recipient)
    assert result.returncode == expected, result.stderr
    assert result.stderr.startswith(status + f" mailstack-mailgate for <{recipient}>: ".encode())
    assert result.stderr.count(b"\n") == 1  # one line, no traceback


@pytest.mark.parametrize("case", ["world-readable", "missing", "empty"])
def test_unsafe_or_missing_password_file_is_a_config_error(tmp_path: Path, refused_port: int, case: str) -> None:
    path = tmp_path / "pw"
    if case != "missing":
        path.write_text("" if case == "empty" else PASSWORD)
        path.chmod(0o644 if case == "world-readable" else 0o600)
    result = run(f"http://{ADDRESS}:{refused_port}", path)
    assert result.returncode == mailgate.EX_CONFIG, result.stderr


def test_bad_arguments_and_missing_config_are_config_errors(tmp_path: Path) -> None:
    for argv in (["--bogus"], ["--config", str(tmp_path / "absent.conf")], ["--url", "ftp://x", "--database", "d", "--password-file", "/x"]):
        result = subprocess.run([sys.executable, "-m", "mailstack.gateway.mailgate", *argv], input=b"", capture_output=True)
        assert result.returncode == mailgate.EX_CONFIG, (argv, result.stderr)


def test_the_password_is_scrubbed_even_if_a_reason_contained_it(monkeypatch: pytest.MonkeyPatch, password_file: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def leaky(raw: bytes, config: mailgate.Config) -> int:
        raise mailgate.MailgateExit(mailgate.EX_SOFTWARE, f"server echoed {config.password}")

    monkeypatch.setattr(mailgate, "deliver", leaky)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x")))
    code = mailgate.main(["--url", "http://127.0.20.60:1", "--database", "d", "--uid", "2", "--password-file", str(password_file)])
    assert code == mailgate.EX_SOFTWARE
    err = capsys.readouterr().err
    assert PASSWORD not in err and "********" in err


ODOO17_NO_ROUTE = (
    "Traceback (most recent call last):\n  File \"/opt/odoo/odoo/addons/base/controllers/rpc.py\", line 160, in xmlrpc_2\n"
    "    response = self._xmlrpc(service)\n"
    "ValueError: No possible route found for incoming message from a@b.test to x@example.net "
    "(Message-Id <1@b>:). Create an appropriate mail.alias or force the destination model.\n"
)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (xmlrpc.client.Fault(1, ODOO17_NO_ROUTE), mailgate.EX_NOUSER),
        (xmlrpc.client.Fault(3, "Access Denied"), mailgate.EX_NOPERM),
        (xmlrpc.client.Fault(4, "You are not allowed to create 'Lead' (crm.lead) records."), mailgate.EX_NOPERM),
        (xmlrpc.client.Fault(1, 'psycopg2.OperationalError: FATAL:  database "x" does not exist'), mailgate.EX_CONFIG),
        (xmlrpc.client.Fault(1, "psycopg2.OperationalError: server closed the connection unexpectedly"), mailgate.EX_TEMPFAIL),
        (xmlrpc.client.Fault(1, "psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update"), mailgate.EX_TEMPFAIL),
        (xmlrpc.client.Fault(1, "psycopg2.pool.PoolError: The Connection Pool Is Full"), mailgate.EX_TEMPFAIL),
        (xmlrpc.client.Fault(1, "TypeError: something broke"), mailgate.EX_SOFTWARE),
        (xmlrpc.client.Fault(2, "UserError: the alias is archived"), mailgate.EX_SOFTWARE),
        (xmlrpc.client.Fault(1, "Traceback ...\nTypeError: cannot marshal None unless allow_none is enabled\n"), mailgate.EX_OK),
        (xmlrpc.client.Fault(2, "cannot marshal None unless allow_none is enabled"), mailgate.EX_SOFTWARE),
    ],
)
def test_fault_classification(fault: xmlrpc.client.Fault, expected: int) -> None:
    assert mailgate.classify_fault(fault).code == expected


@pytest.mark.parametrize(("status", "expected"), [(500, 75), (502, 75), (503, 75), (429, 75), (404, 78), (401, 77), (403, 77), (400, 70)])
def test_http_status_classification(status: int, expected: int) -> None:
    assert mailgate.classify_http(status, "x").code == expected


def test_mailgate_is_standard_library_only() -> None:
    """It is copied to gateway hosts and run by the system Python without mailstack."""
    source = Path(mailgate.__file__).read_text()
    assert "from modules" not in source and "import modules" not in source
