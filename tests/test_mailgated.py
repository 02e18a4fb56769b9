"""mailstack-mailgated, the resident mailgate: LMTP replies per failure class, the bytes
Odoo gets, bounded concurrency, sessions kept, no secret in a reply.

The service runs as a real process, copied alone with mailgate.py into a directory and
started like on a gateway host (``/usr/bin/python3 -I -S mailgated.py``), against Odoo
stand-in processes on loopback (127.0.150.61, kernel-chosen ports); the client is the
standard library's ``smtplib.LMTP``. The reply classes are checked against the pipe
mailgate's exit codes for the same cases (tests/test_mailgate.py): one mapping.
"""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.gateway import mailgate, mailgated
from mailstack.gateway.render import mailgate_source, mailgated_source
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import mailgate_python

ADDRESS = "127.0.150.61"
PASSWORD = "pw-Lm22-never-in-a-reply"
ALIASES = ["sales@example.net", "support@example.net"]
BEHAVIOURS = ("ok", "transient", "http-500", "garbage", "crash", "slow:30")
MESSAGE = (b"From: a@outside.test\r\nTo: sales@example.net\r\nMessage-Id: <lmtp-{n}@outside.test>\r\n"
           b"Subject: bytes\r\n\r\n.a line that starts with a dot\r\n8bit \xc3\xa4\r\nlast line\r\n")
_counter = iter(range(1, 100000))


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OdooStandIn]]:
    servers: dict[str, OdooStandIn] = {}
    try:
        for behaviour in BEHAVIOURS:
            server = OdooStandIn(tmp_path_factory.mktemp(f"odoo-{behaviour.replace(':', '-')}"), ADDRESS, 0,
                                 database="odoo", password=PASSWORD, aliases=ALIASES, behaviour=behaviour)
            server.start()
            servers[behaviour] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        yield sock.getsockname()[1]


class Service:
    """mailgated on its own copy of the two scripts and a config of its own."""

    def __init__(self, directory: Path, url: str, *, password: str = PASSWORD, database: str = "odoo",
                 timeout: int = 10, concurrency: int = 2, login: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "mailgate.py").write_text(mailgate_source())
        (directory / "mailgated.py").write_text(mailgated_source())
        self.password_file = directory / "odoo-password"
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        who = f"login = {login}" if login else "uid = 2"
        (directory / "mailgate.conf").write_text(
            f"[mailgate]\nurl = {url}\ndatabase = {database}\n{who}\npassword_file = {self.password_file}\n"
            f"timeout = {timeout}\nlisten = {ADDRESS}:0\nconcurrency = {concurrency}\n")
        ready = directory / "ready"
        self.log = directory / "mailgated.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([mailgate_python(), "-I", "-S", str(directory / "mailgated.py"),
                                             "--config", str(directory / "mailgate.conf"), "--ready-file", str(ready)],
                                            stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "mailgated did not start"
            time.sleep(0.02)
        self.port = int(ready.read_text().split()[1])

    def send(self, recipients: list[str], message: bytes | None = None, sender: str = "a@outside.test") -> dict[str, tuple[int, bytes]]:
        """The LMTP reply per recipient (smtplib.LMTP raises only when all fail)."""
        body = message if message is not None else MESSAGE.replace(b"{n}", str(next(_counter)).encode())
        with smtplib.LMTP(ADDRESS, self.port, timeout=60) as client:
            client.ehlo_or_helo_if_needed()
            code, _ = client.mail(sender)
            assert code == 250
            for recipient in recipients:
                assert client.rcpt(recipient)[0] == 250
            client.putcmd("data")
            assert client.getreply()[0] == 354
            data = smtplib.quotedata(body.decode("latin-1")).encode("latin-1")
            client.send(data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"))  # as smtplib's data()
            replies = {recipient: client.getreply() for recipient in recipients}
        for code, text in replies.values():
            assert PASSWORD.encode() not in text
        return replies

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    return tmp_path / "host"


def test_delivers_with_return_path_and_a_delivered_to_per_recipient(standins: dict[str, OdooStandIn], service_dir: Path) -> None:
    """The bytes Odoo gets are the pipe's: LF line ends, Return-Path (the pipe's flag R),
    one Delivered-To line per recipient in front; one message_process for both."""
    service = Service(service_dir, standins["ok"].url)
    try:
        replies = service.send(["sales@example.net", "support@example.net"], sender="a@outside.test")
    finally:
        service.stop()
    assert [code for code, _ in replies.values()] == [250, 250]
    assert all(text.startswith(b"2.0.0 mailstack-mailgate for <") for _, text in replies.values())
    stored = [m for m in standins["ok"].messages() if str(m["message_id"]).startswith("<lmtp-")][-1]
    raw = stored["raw"]
    assert isinstance(raw, bytes)
    head = b"Delivered-To: sales@example.net\nDelivered-To: support@example.net\nReturn-Path: <a@outside.test>\n"
    assert raw.startswith(head + b"From: a@outside.test\nTo: sales@example.net\n")
    assert raw.endswith(b"\n\n.a line that starts with a dot\n8bit \xc3\xa4\nlast line\n")
    assert b"\r" not in raw


@pytest.mark.parametrize(
    ("case", "code", "status"),
    [
        ("no-route", 550, b"5.1.1"),
        ("wrong-password", 554, b"5.7.0"),
        ("missing-database", 451, b"4.3.5"),
        ("transient", 451, b"4.3.0"),
        ("http-500", 451, b"4.3.0"),
        ("garbage", 451, b"4.3.0"),
        ("crash", 554, b"5.3.0"),
        ("timeout", 451, b"4.3.0"),
        ("down", 451, b"4.3.0"),
    ],
)
def test_reply_per_failure_class_is_the_pipes(standins: dict[str, OdooStandIn], service_dir: Path, refused_port: int,
                                              case: str, code: int, status: bytes) -> None:
    url, recipient = standins["ok"].url, "sales@example.net"
    options: dict[str, Any] = {}
    if case == "no-route":
        recipient = "nobody@example.net"
    elif case == "wrong-password":
        options = {"password": "not-the-password"}
    elif case == "missing-database":
        options = {"database": "nope"}
    elif case in ("transient", "http-500", "garbage", "crash"):
        url = standins[case].url
    elif case == "timeout":
        url, options = standins["slow:30"].url, {"timeout": 1}
    elif case == "down":
        url = f"http://{ADDRESS}:{refused_port}"
    service = Service(service_dir, url, **options)
    try:
        message = MESSAGE.replace(b"sales@", recipient.split("@")[0].encode() + b"@").replace(b"{n}", case.encode())
        replies = service.send([recipient], message)
    finally:
        service.stop()
    reply_code, text = replies[recipient]
    assert (reply_code, text.split()[0]) == (code, status), text
    assert text.startswith(status + f" mailstack-mailgate for <{recipient}>: ".encode())
    assert b"Traceback" not in text and b"\n" not in text
    # The same class as the pipe's exit code for that status (sysexits, Postfix's table).
    exit_code = next(c for c, (_, enhanced) in mailgate.REPLIES.items() if enhanced == status.decode())
    assert mailgate.REPLIES[exit_code][0] == str(code)


def test_the_password_file_is_read_again_when_it_changes(standins: dict[str, OdooStandIn], service_dir: Path) -> None:
    service = Service(service_dir, standins["ok"].url, password="old-wrong-password", login="admin")
    try:
        assert service.send(["sales@example.net"])["sales@example.net"][0] == 554
        service.password_file.unlink()
        service.password_file.write_text(PASSWORD + "\n")
        service.password_file.chmod(0o600)
        assert service.send(["sales@example.net"])["sales@example.net"][0] == 250
    finally:
        service.stop()


def test_protocol_errors_and_a_cut_connection(standins: dict[str, OdooStandIn], service_dir: Path) -> None:
    """Commands out of order get 503, junk 500/501; a client that goes away inside DATA
    delivers nothing (it retries later), and the service keeps serving."""
    service = Service(service_dir, standins["ok"].url)
    before = len(standins["ok"].messages())
    try:
        with socket.create_connection((ADDRESS, service.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220 ")
            for command, expected in ((b"MAIL FROM:<a@b.test>", b"503"), (b"LHLO x", b"250"), (b"RCPT TO:<x@y>", b"503"),
                                      (b"MAIL FROM:a@b.test", b"501"), (b"MAIL FROM:<a@b.test>", b"250"),
                                      (b"RCPT TO:<bad\x01@y>", b"501"), (b"BOGUS", b"500"), (b"DATA", b"503"),
                                      (b"RCPT TO:<sales@example.net>", b"250"), (b"DATA", b"354")):
                sock.sendall(command + b"\r\n")
                line = reader.readline()
                while line[3:4] == b"-":
                    line = reader.readline()
                assert line[:3] == expected, (command, line)
            sock.sendall(b"Message-Id: <cut@outside.test>\r\n\r\nhalf a message\r\n")
        assert service.send(["sales@example.net"])["sales@example.net"][0] == 250
        ids = [str(m["message_id"]) for m in standins["ok"].messages()[before:]]
        assert "<cut@outside.test>" not in ids and len(ids) == 1
    finally:
        service.stop()


def test_deliveries_at_odoo_are_bounded_and_sessions_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In process, with mailgate.deliver replaced by a recorder: never more than
    ``concurrency`` messages at Odoo at once, and each worker's session object is
    reused from message to message (its connections and uid with it)."""
    password = tmp_path / "pw"
    password.write_text("x\n")
    password.chmod(0o600)
    conf = tmp_path / "mailgate.conf"
    conf.write_text(f"[mailgate]\nurl = http://{ADDRESS}:1\ndatabase = d\nuid = 2\npassword_file = {password}\n"
                    f"listen = {ADDRESS}:0\nconcurrency = 3\n")
    lock, state = threading.Lock(), {"now": 0, "most": 0}
    sessions: set[int] = set()

    def recorder(raw: bytes, config: mailgate.Config, session: mailgate.Session | None = None) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            sessions.add(id(session))
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return 1

    monkeypatch.setattr(mailgate, "deliver", recorder)
    deliveries = mailgated.Deliveries(str(conf), mailgated.load_settings(str(conf)))
    threads = [threading.Thread(target=deliveries.deliver, args=(b"Message-Id: <x>\n\nx\n", "a@b.test", ["s@example.net"]))
               for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["most"] == 3
    assert len(sessions) == 3


def test_mailgated_needs_nothing_but_mailgate_py(tmp_path: Path) -> None:
    """Copied alone with mailgate.py, it starts under ``python3 -I -S`` (no mailstack, no
    site-packages); a bad config ends with the mailgate's EX_CONFIG and one line."""
    shutil.copyfile(Path(mailgated.__file__), tmp_path / "mailgated.py")
    shutil.copyfile(Path(mailgate.__file__), tmp_path / "mailgate.py")
    (tmp_path / "bad.conf").write_text("[mailgate]\nurl = http://x\ndatabase = d\nuid = 2\npassword_file = /nonexistent\n")
    result = subprocess.run([mailgate_python(), "-I", "-S", str(tmp_path / "mailgated.py"), "--config", str(tmp_path / "bad.conf")],
                            capture_output=True, timeout=30)
    assert result.returncode == mailgate.EX_CONFIG, result.stderr
    assert result.stderr.count(b"\n") == 1 and b"cannot read password file" in result.stderr
