"""mailstack-mailgate: hand one inbound message from Postfix to Odoo, never losing it.

With ``gateway.mailgate.delivery: pipe`` Postfix's pipe runs this once per message (see
``templates/postfix/master.cf.j2``) with the raw message on stdin; with ``lmtp`` (the
default) the resident ``mailstack.gateway.mailgated`` calls ``deliver`` here for each
message it gets over LMTP, with a ``Session`` kept per worker, and answers Postfix from
the same ``REPLIES`` table — one rule for both. It calls Odoo's XML-RPC
``execute_kw(db, uid, password, 'mail.thread', 'message_process', [False, Binary(raw)], {})``
like Odoo's own ``odoo-mailgate.py``, but:

* the password comes from a file that is not world-accessible, never from argv
  (argv shows in ``ps`` and in Postfix's logs and bounces);
* the message bytes go to Odoo unchanged (``xmlrpc.client.Binary``), after one
  ``Delivered-To:`` line per original envelope recipient (``--recipient``, from
  Postfix's ``${original_recipient}``): Odoo routes on Delivered-To ∪ To ∪ Cc, so a
  Bcc'd alias is found, and since Postfix hands over all recipients of a message in
  one run, Odoo sees every alias of it at once (it ignores later copies with a
  Message-Id it already processed);
* the exit status tells Postfix whether to retry (sysexits.h), so an Odoo outage
  queues mail instead of bouncing it:

  ====  ===============  =====================================================  =======
  code  name             when                                                   Postfix
  ====  ===============  =====================================================  =======
  0     EX_OK            Odoo processed the message: stored it, or decided      done
                         itself to drop it or to bounce it (it answers False:
                         duplicate Message-Id, a bounce, a direct write to the
                         catchall, an alias' contact policy — Odoo sent its
                         own bounce), or its loop detection answered None,
                         which its XML-RPC cannot marshal ("cannot marshal
                         None" fault: Odoo dropped a reply to its own bounce
                         or sent its "too many emails" bounce). Never a
                         second bounce from Postfix on top of Odoo's.
  67    EX_NOUSER        Odoo has no route ("No possible route found ...")      bounce
  70    EX_SOFTWARE      any other Odoo fault, unexpected HTTP 4xx              bounce
  75    EX_TEMPFAIL      connection refused/reset, DNS, TLS, timeout, HTTP 5xx
                         or 429, a non-XML-RPC answer, transient Odoo faults
                         (database serialization, connection pool, lock)         retry
  77    EX_NOPERM        Odoo refused the credentials or the uid's rights       bounce
  78    EX_CONFIG        our configuration: missing/unsafe password file, bad   retry
                         config file or arguments, unknown database, HTTP 404
  75    EX_TEMPFAIL      an unexpected error inside the mailgate itself         retry
  ====  ===============  =====================================================  =======

* stderr, which Postfix copies into bounces, carries one line with an enhanced
  status code and never a secret (the password is also scrubbed defensively).

This file uses the standard library only, so it can be copied to a gateway host and
run by its system Python (``/usr/bin/python3 mailgate.py``) without installing
mailstack there.
"""

from __future__ import annotations

import argparse
import configparser
import os
import socket
import ssl
import stat
import sys
import xmlrpc.client
from http.client import HTTPConnection, HTTPException, HTTPSConnection

# Postfix starts this once per message, so what it imports is paid per message: no
# ``typing`` at run time (annotations are strings here; mypy reads the names below),
# no ``dataclasses`` (it imports ``inspect``, ``ast``, ``dis``, ``tokenize``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, Sequence
from xml.parsers.expat import ExpatError

EX_OK = 0
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

#: Odoo's ValueError when no alias, reply or catchall matches (mail_thread.message_route).
NO_ROUTE = "No possible route found for incoming message"
#: The fault Odoo 17's /xmlrpc/2 answers when a method returns None: it marshals with
#: allow_none=False after committing. message_process returns None only from its loop
#: detection (_detect_loop_headers, _detect_loop_sender), once the message was handled.
NONE_RESULT = "cannot marshal None unless allow_none is enabled"
#: Fault text of Odoo-side conditions that pass by themselves: retry later.
TRANSIENT_FAULTS = (
    "OperationalError",  # psycopg2: server restarting, connection lost
    "SerializationFailure",
    "could not serialize access",
    "TransactionRollbackError",
    "deadlock detected",
    "PoolError",
    "connection pool is full",
    "too many connections",
    "LockNotAvailable",
    "could not obtain lock",
    "MemoryError",
)
#: Fault text meaning the configured database does not exist (checked before transient).
MISSING_DATABASE = ("does not exist", "KeyError: '")
RPC_FAULT_CODE_ACCESS_DENIED = 3
RPC_FAULT_CODE_ACCESS_ERROR = 4


class MailgateExit(Exception):
    """A delivery outcome other than success: exit code plus a one-line reason."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


class Config:
    """Where Odoo is and who we are there; ``password`` was read from a file."""

    __slots__ = ("url", "database", "password", "uid", "login", "timeout")

    def __init__(self, url: str, database: str, password: str, uid: int | None = 2,
                 login: str | None = None, timeout: float = 60.0) -> None:
        self.url = url
        self.database = database
        self.password = password
        self.uid = uid
        self.login = login
        self.timeout = timeout


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: tuple[str, dict[str, str]] | str) -> HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class _TimeoutSafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float) -> None:
        super().__init__(context=ssl.create_default_context())
        self._timeout = timeout

    def make_connection(self, host: tuple[str, dict[str, str]] | str) -> HTTPSConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


def _proxy(config: Config, service: str) -> xmlrpc.client.ServerProxy:
    url = f"{config.url.rstrip('/')}/xmlrpc/2/{service}"
    transport: xmlrpc.client.Transport
    if url.startswith("https://"):
        transport = _TimeoutSafeTransport(config.timeout)
    else:
        transport = _TimeoutTransport(config.timeout)
    return xmlrpc.client.ServerProxy(url, transport=transport, allow_none=True)


class Session:
    """Odoo's two XML-RPC endpoints over connections kept between calls, and the uid a
    login resolved. The pipe makes one per message; the resident mailgate
    (``mailstack.gateway.mailgated``) keeps one per worker, so a message costs one
    request on an open connection (when Odoo's side keeps it open: HTTP/1.1) and no
    login. ``reset`` drops both after a failure, so the next call starts afresh."""

    __slots__ = ("config", "_common", "_object", "uid")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._common: xmlrpc.client.ServerProxy | None = None
        self._object: xmlrpc.client.ServerProxy | None = None
        self.uid: Any = None

    def common(self) -> xmlrpc.client.ServerProxy:
        if self._common is None:
            self._common = _proxy(self.config, "common")
        return self._common

    def object(self) -> xmlrpc.client.ServerProxy:
        if self._object is None:
            self._object = _proxy(self.config, "object")
        return self._object

    def reset(self) -> None:
        for proxy in (self._common, self._object):
            if proxy is not None:
                proxy("close")()
        self._common = self._object = None
        self.uid = None


def deliver(raw: bytes, config: Config, session: Session | None = None) -> int:
    """Post ``raw`` to Odoo's ``mail.thread.message_process``; return Odoo's record id.

    Raises MailgateExit with the exit code for every failure class, and with EX_OK
    when Odoo's loop detection answered None (handled, nothing to retry or bounce).
    With a ``session`` (the resident mailgate) its connections and login are reused."""
    session = session or Session(config)
    try:
        uid: Any = config.uid
        if config.login:
            if session.uid is None:
                session.uid = session.common().authenticate(config.database, config.login, config.password, {})
            uid = session.uid
            if not uid:
                session.uid = None
                raise MailgateExit(EX_NOPERM, f"Odoo refused the login {config.login!r} on database {config.database!r}")
        result = session.object().execute_kw(
            config.database, uid, config.password,
            "mail.thread", "message_process", [False, xmlrpc.client.Binary(raw)], {},
        )
    except xmlrpc.client.Fault as fault:
        session.uid = None  # a changed password or rights: log in again next time
        raise classify_fault(fault) from None
    except xmlrpc.client.ProtocolError as err:
        session.reset()
        raise classify_http(err.errcode, err.errmsg) from None
    except (TimeoutError, socket.timeout):
        session.reset()
        raise MailgateExit(EX_TEMPFAIL, f"Odoo did not answer within {config.timeout:g}s") from None
    except ssl.SSLError as err:
        session.reset()
        raise MailgateExit(EX_TEMPFAIL, f"TLS with Odoo failed: {err.reason or type(err).__name__}") from None
    except OSError as err:  # refused, reset, unreachable, DNS (socket.gaierror)
        session.reset()
        raise MailgateExit(EX_TEMPFAIL, f"cannot reach Odoo: {err.strerror or type(err).__name__}") from None
    except (HTTPException, xmlrpc.client.ResponseError, ExpatError, ValueError) as err:
        # Truncated answers, an HTML maintenance page from a proxy: not Odoo speaking.
        session.reset()
        raise MailgateExit(EX_TEMPFAIL, f"Odoo's answer is not XML-RPC ({type(err).__name__})") from None
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def classify_fault(fault: xmlrpc.client.Fault) -> MailgateExit:
    """The exit code for an Odoo fault (Odoo 17 fault codes: 3 AccessDenied, 4
    AccessError, 1 anything else with the traceback as faultString)."""
    text = str(fault.faultString)
    last = _last_line(text)
    if fault.faultCode == 1 and last.endswith(NONE_RESULT):
        return MailgateExit(EX_OK, "Odoo's loop detection handled the message (it answered None: dropped, or Odoo sent its own bounce)")
    if NO_ROUTE in text:
        return MailgateExit(EX_NOUSER, "Odoo has no alias or route for this recipient")
    if fault.faultCode in (RPC_FAULT_CODE_ACCESS_DENIED, RPC_FAULT_CODE_ACCESS_ERROR) or "AccessDenied" in text or text.strip() == "Access Denied":
        return MailgateExit(EX_NOPERM, f"Odoo denied access: {last}")
    if "database" in text.lower() and any(marker in text for marker in MISSING_DATABASE):
        return MailgateExit(EX_CONFIG, f"Odoo's database is missing: {last}")
    if any(marker.lower() in text.lower() for marker in TRANSIENT_FAULTS):
        return MailgateExit(EX_TEMPFAIL, f"Odoo is temporarily unable to process mail: {last}")
    return MailgateExit(EX_SOFTWARE, f"Odoo failed to process the message: {last}")


def classify_http(status: int, message: str) -> MailgateExit:
    """The exit code for an HTTP error status of the XML-RPC endpoint."""
    if status >= 500 or status in (408, 429):
        return MailgateExit(EX_TEMPFAIL, f"Odoo answered HTTP {status} {message}")
    if status == 404:
        return MailgateExit(EX_CONFIG, "Odoo answered HTTP 404: check the mailgate url (no /xmlrpc/2 there)")
    if status in (401, 403):
        return MailgateExit(EX_NOPERM, f"Odoo answered HTTP {status} {message}")
    return MailgateExit(EX_SOFTWARE, f"Odoo answered HTTP {status} {message}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:300]


def with_delivered_to(raw: bytes, recipients: Sequence[str]) -> bytes:
    """``raw`` with a ``Delivered-To:`` line per recipient in front (like Postfix's pipe
    flag D, which only works with one recipient per run); the rest stays byte-exact."""
    newline = b"\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    lines = []
    for recipient in dict.fromkeys(recipients):
        if not recipient or any(ord(c) < 33 and c != " " or ord(c) == 127 for c in recipient):
            raise MailgateExit(EX_CONFIG, "usage: --recipient must be an e-mail address")
        lines.append(b"Delivered-To: " + recipient.encode("utf-8") + newline)
    return b"".join(lines) + raw


def read_password(path: str) -> str:
    """The Odoo password from a file nobody but its owner (and group) can read."""
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
            raise MailgateExit(EX_CONFIG, f"password file {path} is accessible to others (chmod 0600 or 0640)")
        with open(path, encoding="utf-8") as handle:
            password = handle.read().strip("\r\n")
    except MailgateExit:
        raise
    except OSError as err:
        raise MailgateExit(EX_CONFIG, f"cannot read password file {path}: {err.strerror}") from None
    if not password:
        raise MailgateExit(EX_CONFIG, f"password file {path} is empty")
    return password


def load_config(args: argparse.Namespace) -> Config:
    """Merge the config file (``[mailgate]``) with command-line overrides."""
    values: dict[str, str] = {}
    if args.config:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(args.config, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, configparser.Error) as err:
            raise MailgateExit(EX_CONFIG, f"cannot read config {args.config}: {getattr(err, 'strerror', None) or type(err).__name__}") from None
        if parser.has_section("mailgate"):
            values.update(parser["mailgate"])
    for key in ("url", "database", "uid", "login", "password_file", "timeout"):
        if getattr(args, key, None) is not None:
            values[key] = str(getattr(args, key))
    missing = [key for key in ("url", "database", "password_file") if not values.get(key)]
    if missing:
        raise MailgateExit(EX_CONFIG, f"mailgate configuration lacks {', '.join(missing)}")
    if not values["url"].startswith(("http://", "https://")):
        raise MailgateExit(EX_CONFIG, "mailgate url must start with http:// or https://")
    try:
        uid = int(values["uid"]) if values.get("uid") else None
        timeout = float(values.get("timeout") or 60)
    except ValueError:
        raise MailgateExit(EX_CONFIG, "mailgate uid and timeout must be numbers") from None
    login = values.get("login") or None
    if uid is None and login is None:
        raise MailgateExit(EX_CONFIG, "mailgate configuration needs uid or login")
    password = read_password(values["password_file"])
    return Config(values["url"], values["database"], password, uid, login, timeout)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise MailgateExit(EX_CONFIG, f"usage: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="mailstack-mailgate", description="Deliver one message from stdin to Odoo.")
    parser.add_argument("--config", help="INI file with a [mailgate] section (url, database, uid|login, password_file, timeout)")
    parser.add_argument("--url", help="Odoo's base URL, e.g. https://odoo.example.com")
    parser.add_argument("--database")
    parser.add_argument("--uid", type=int)
    parser.add_argument("--login")
    parser.add_argument("--password-file", dest="password_file")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--recipient", nargs="+", action="extend", default=[],
                        help="the original envelope recipients: a Delivered-To line each")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run as Postfix's pipe command; returns the sysexits code."""
    password = None
    recipient = ""
    try:
        args = _parser().parse_args(argv)
        recipient = f" for <{'>, <'.join(args.recipient)}>"[:200] if args.recipient else ""
        config = load_config(args)
        password = config.password
        raw = with_delivered_to(sys.stdin.buffer.read(), args.recipient)
        deliver(raw, config)
        return EX_OK
    except MailgateExit as outcome:
        _report(outcome, recipient, password)  # exit 0: Postfix logs nothing of it
        return outcome.code
    except Exception as err:  # never a traceback (it could show values) into a bounce
        _report(MailgateExit(EX_TEMPFAIL, f"mailgate internal error {type(err).__name__}"), recipient, password)
        return EX_TEMPFAIL


#: The one mapping of outcomes to what Postfix is told, for both deliveries: the pipe's
#: exit code (Postfix reads its class from the sysexits code: these are the enhanced
#: status codes of Postfix's own sys_exits table, 4.x.x = retry, 5.x.x = bounce) and the
#: resident mailgate's LMTP reply per recipient (the same enhanced code after an SMTP
#: reply code of its class: 250, 451 retry, 550/554 bounce).
REPLIES = {
    EX_OK: ("250", "2.0.0"), EX_NOUSER: ("550", "5.1.1"), EX_SOFTWARE: ("554", "5.3.0"),
    EX_TEMPFAIL: ("451", "4.3.0"), EX_NOPERM: ("554", "5.7.0"), EX_CONFIG: ("451", "4.3.5"),
}


def status_text(outcome: MailgateExit, recipient: str, password: str | None) -> str:
    """``<enhanced code> mailstack-mailgate<recipient>: <reason>``, one line of at most
    500 characters, the password scrubbed: what the pipe writes to stderr (Postfix puts
    it into its log and bounces) and what the LMTP reply carries after its code."""
    text = f"{REPLIES.get(outcome.code, REPLIES[EX_TEMPFAIL])[1]} mailstack-mailgate{recipient}: {outcome.reason}"
    if password:
        text = text.replace(password, "********")
    return text.replace("\r", " ").replace("\n", " ")[:500]


def lmtp_reply(outcome: MailgateExit, recipient: str, password: str | None) -> str:
    """The LMTP reply line (no CRLF) for ``outcome``: the same class as the pipe's exit."""
    return f"{REPLIES.get(outcome.code, REPLIES[EX_TEMPFAIL])[0]} {status_text(outcome, recipient, password)}"


def _report(outcome: MailgateExit, recipient: str, password: str | None) -> None:
    sys.stderr.write(status_text(outcome, recipient, password) + "\n")


if __name__ == "__main__":
    sys.exit(main())
