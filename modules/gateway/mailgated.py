"""mailstack-mailgated: the resident mailgate, an LMTP server (RFC 2033) for Postfix.

Postfix's ``pipe`` starts the mailgate once per message, and most of a message's CPU on
the gateway went into starting Python and importing ``xmlrpc.client`` (docs/benchmarks.md).
This service starts once: Postfix's LMTP client (``odoo unix - - n - - lmtp`` in
master.cf, next hop ``inet:127.0.0.1:10028`` in the transport map) hands it each
message, and it calls Odoo's ``message_process`` exactly as the pipe mailgate does —
the same code (``mailstack.gateway.mailgate``: ``deliver``, the Delivered-To lines, the
fault classes and their one mapping, ``REPLIES``) — over an XML-RPC session per worker
that is kept between messages (its connection stays open when Odoo's HTTP side keeps
it, and a ``login`` is authenticated once).

What Postfix is told, and when:

* after the final ``.`` of DATA, one reply per accepted recipient (RFC 2033 §4.2), and
  only once Odoo has answered: Odoo processes a message once for all its recipients
  (they are its Delivered-To lines), so each recipient gets the outcome of that one
  call — 250 when processed, 451/4.x.x when the pipe would exit with a retry code
  (Odoo down, timeout, HTTP 5xx, transient faults, configuration), 550/554 5.x.x when
  it would bounce; the text is the pipe's stderr line (no secret: the password is
  scrubbed, no traceback);
* a connection cut before that (the service killed, restarted) is, for Postfix, a
  failed delivery it retries later; if Odoo had already stored the message, Odoo 17's
  ``message_process`` ignores the copy by its Message-Id. Nothing is lost, nothing is
  posted twice.

At most ``concurrency`` messages are at Odoo at once (``gateway.mailgate.concurrency``,
the same value as Postfix's ``odoo_destination_concurrency_limit``): a delivery waits
for a free session. The message reaches Odoo as the pipe hands it over: LF line ends,
``Return-Path:`` (the pipe's flag R) and a ``Delivered-To:`` per recipient in front.

Standard library only, like the mailgate: copied to the gateway host beside
``mailgate.py`` (it loads that file when run as a script) and run by the system Python
as a systemd service (``templates/systemd/mailstack-mailgate.service.j2``).
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import os
import queue
import socket
import socketserver
import sys
import threading
from types import ModuleType

TYPE_CHECKING = False


def _sibling(name: str) -> ModuleType:
    """``name``.py from this file's directory: on a gateway host the two scripts lie side
    by side and run under ``python3 -I``, which does not put that directory on sys.path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ beside the scripts: the directory is root's (or read-only under
    # the unit's ProtectSystem=strict), and the lab keeps the mailgate's directory private.
    sys.dont_write_bytecode = True
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING or __package__:
    from mailstack.gateway import mailgate
else:
    mailgate = _sibling("mailgate")

#: A command line (RFC 5321 §4.5.3.1.4: 512; LMTP clients send ESMTP parameters too).
MAX_LINE = 2048
#: Recipients per transaction (Postfix sends at most odoo_destination_recipient_limit).
MAX_RECIPIENTS = 1000
#: Idle time before the service closes a connection (Postfix's cache closes sooner).
IDLE_TIMEOUT = 300.0
DEFAULT_PORT = 10028
#: The largest message accepted when the config gives no ``max_size`` (Postfix's own
#: message_size_limit refuses larger mail first).
DEFAULT_MAX_SIZE = 64 * 1024 * 1024


class Settings:
    """What the service adds to the mailgate's ``[mailgate]`` section."""

    __slots__ = ("listen", "concurrency", "max_size", "password_file")

    def __init__(self, listen: tuple[str, int], concurrency: int, max_size: int, password_file: str) -> None:
        self.listen = listen
        self.concurrency = concurrency
        self.max_size = max_size
        self.password_file = password_file


def load_settings(path: str) -> Settings:
    """``listen`` (host:port), ``concurrency``, ``max_size`` from ``[mailgate]``."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle)
    values = parser["mailgate"] if parser.has_section("mailgate") else {}
    host, _, port = str(values.get("listen", f"127.0.0.1:{DEFAULT_PORT}")).rpartition(":")
    try:
        settings = Settings((host.strip("[]") or "127.0.0.1", int(port)), int(values.get("concurrency", "8")),
                            int(values.get("max_size", str(DEFAULT_MAX_SIZE))), str(values.get("password_file", "")))
    except ValueError:
        raise mailgate.MailgateExit(mailgate.EX_CONFIG, "mailgate listen port, concurrency and max_size must be numbers") from None
    if not 1 <= settings.concurrency <= 1000 or not 0 <= settings.listen[1] <= 65535:
        raise mailgate.MailgateExit(mailgate.EX_CONFIG, "mailgate concurrency must be 1..1000 and the listen port 0..65535")
    return settings


class Deliveries:
    """Odoo's sessions, one per worker, and the config (the password file is read again
    when it changes, so a new password needs no restart)."""

    def __init__(self, config_path: str, settings: Settings) -> None:
        self.config_path = config_path
        self.settings = settings
        self.lock = threading.Lock()
        self.config = self._load()
        self.sessions: queue.LifoQueue[mailgate.Session] = queue.LifoQueue()
        for _ in range(settings.concurrency):
            self.sessions.put(mailgate.Session(self.config))

    def _load(self) -> mailgate.Config:
        self.stamp = _stamp(self.settings.password_file)
        config: mailgate.Config = mailgate.load_config(argparse.Namespace(config=self.config_path))
        return config

    def current(self) -> mailgate.Config:
        with self.lock:
            if _stamp(self.settings.password_file) != self.stamp:
                self.config = self._load()
            return self.config

    def deliver(self, raw: bytes, sender: str, recipients: list[str]) -> tuple[mailgate.MailgateExit, str | None]:
        """Odoo's outcome for one message (never raises) and the password to scrub."""
        password: str | None = None
        session = self.sessions.get()  # at most `concurrency` messages at Odoo at once
        try:
            config = self.current()
            password = config.password
            if session.config is not config:
                session.reset()
                session.config = config
            message = mailgate.with_delivered_to(b"Return-Path: <" + sender.encode("utf-8", "replace") + b">\n" + raw, recipients)
            mailgate.deliver(message, config, session)
            return mailgate.MailgateExit(mailgate.EX_OK, "Odoo processed the message"), password
        except mailgate.MailgateExit as outcome:
            return outcome, password
        except Exception as err:  # never a traceback (it could show values) into a reply
            session.reset()
            return mailgate.MailgateExit(mailgate.EX_TEMPFAIL, f"mailgate internal error {type(err).__name__}"), password
        finally:
            self.sessions.put(session)


def _stamp(path: str) -> tuple[int, int, int]:
    """What tells a changed password file (its inode, size and mtime)."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class _LineTooLong(Exception):
    pass


class Handler(socketserver.StreamRequestHandler):
    """One LMTP session (RFC 2033): LHLO, then transactions MAIL, RCPT…, DATA."""

    server: Server
    timeout = IDLE_TIMEOUT

    def reply(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode("utf-8", "replace"))
        self.wfile.flush()

    def readline(self) -> bytes | None:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of it
                line = self.rfile.readline(MAX_LINE + 1)
            raise _LineTooLong
        return line

    def handle(self) -> None:
        try:
            self.reply(f"220 {socket.gethostname()} LMTP mailstack-mailgate ready")
            self.session()
        except (OSError, TimeoutError):
            return

    def session(self) -> None:
        greeted = False
        sender: str | None = None
        recipients: list[str] = []
        while True:
            try:
                raw = self.readline()
            except _LineTooLong:
                self.reply("500 5.5.2 line too long")
                continue
            if raw is None:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, rest = line.partition(" ")
            verb = verb.upper()
            if verb == "LHLO":
                greeted, sender, recipients = True, None, []
                self.reply(f"250-{socket.gethostname()}", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME",
                           f"250 SIZE {self.server.deliveries.settings.max_size}")
            elif verb == "MAIL" and rest.upper().startswith("FROM:"):
                address = _address(rest[5:])
                if not greeted:
                    self.reply("503 5.5.1 LHLO first")
                elif sender is not None:
                    self.reply("503 5.5.1 nested MAIL command")
                elif address is None:
                    self.reply("501 5.1.7 bad sender address syntax")
                else:
                    sender, recipients = address, []
                    self.reply("250 2.1.0 Ok")
            elif verb == "RCPT" and rest.upper().startswith("TO:"):
                address = _address(rest[3:])
                if sender is None:
                    self.reply("503 5.5.1 MAIL first")
                elif not address:
                    self.reply("501 5.1.3 bad recipient address syntax")
                elif len(recipients) >= MAX_RECIPIENTS:
                    self.reply("452 4.5.3 too many recipients")
                else:
                    recipients.append(address)
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA" and not rest:
                if sender is None or not recipients:
                    self.reply("503 5.5.1 no valid recipients")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                message = self.read_data()
                if message is None:
                    return  # the client went away mid-message: it retries, nothing was delivered
                self.reply(*self.outcome(message, sender, recipients))
                sender, recipients = None, []
            elif verb == "RSET" and not rest:
                sender, recipients = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("500 5.5.2 command not recognized")

    def read_data(self) -> bytes | None:
        """The message up to the lone ``.``, dot-unstuffed, LF line ends (as Postfix's
        pipe hands a message over); ``b""`` marks one over ``max_size``."""
        limit = self.server.deliveries.settings.max_size
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            if line.endswith(b"\r\n"):
                line = line[:-2] + b"\n"
            size += len(line)
            if size <= limit:
                chunks.append(line)
        return b"".join(chunks) if size <= limit else b""

    def outcome(self, message: bytes, sender: str, recipients: list[str]) -> list[str]:
        """One reply per recipient, after Odoo answered for the message."""
        if not message:
            return [f"552 5.3.4 message larger than {self.server.deliveries.settings.max_size} bytes"] * len(recipients)
        outcome, password = self.server.deliveries.deliver(message, sender, recipients)
        return [mailgate.lmtp_reply(outcome, f" for <{recipient}>"[:200], password) for recipient in recipients]


def _address(argument: str) -> str | None:
    """The address of ``<addr> [parameters]``; ``""`` for the null sender; None when it
    is not ``<…>`` or holds control characters, spaces or angle brackets."""
    text = argument.strip()
    if not text.startswith("<") or ">" not in text:
        return None
    address = text[1:text.index(">")]
    if any(ord(c) < 33 or ord(c) == 127 or c in "<>" for c in address):
        return None
    return address


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    deliveries: Deliveries


def serve(config_path: str) -> Server:
    """A bound (not yet serving) service on the config's ``listen`` address."""
    settings = load_settings(config_path)
    deliveries = Deliveries(config_path, settings)
    server = Server(settings.listen, Handler)
    server.deliveries = deliveries
    return server


def log(text: str) -> None:
    sys.stderr.write(f"mailstack-mailgated: {text}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstack-mailgated", description="Postfix's LMTP next hop into Odoo's message_process.")
    parser.add_argument("--config", required=True, help="the mailgate's INI file ([mailgate]: url, database, uid|login, "
                                                        "password_file, timeout, listen, concurrency)")
    parser.add_argument("--ready-file", help="written with the PID and the bound port once listening (tests)")
    args = parser.parse_args(argv)
    try:
        server = serve(args.config)
    except mailgate.MailgateExit as err:
        log(err.reason)
        return err.code
    except OSError as err:
        log(f"cannot listen: {err.strerror or type(err).__name__}")
        return mailgate.EX_CONFIG
    host, port = str(server.server_address[0]), int(server.server_address[1])
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()} {port}\n")
        os.replace(args.ready_file + ".tmp", args.ready_file)
    log(f"listening on {host}:{port}, {server.deliveries.settings.concurrency} sessions to Odoo")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
