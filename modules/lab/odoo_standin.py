"""An Odoo stand-in: the slice of Odoo 17's XML-RPC API that mail delivery touches.

Odoo itself is the one component the lab and tests do not run, so this server answers
like Odoo's documented external API does:

* ``/xmlrpc/2/common``: ``version()``, ``authenticate(db, login, password, env)`` and
  ``login(db, login, password)`` (a uid, or False).
* ``/xmlrpc/2/object``: ``execute_kw(db, uid, password, model, method, args, kwargs)``
  with ``mail.thread.message_process(model, message, ...)`` and
  ``mail.message.search_read(domain, fields)``.

``message_process`` routes like Odoo's ``mail.thread.message_route``: on the
addresses of Delivered-To, To, Cc, Resent-To and Resent-Cc against the aliases it was
given (``local@domain``; ``local+tag@domain`` matches ``local@domain``). A routed
message is stored byte for byte in SQLite and its record id returned; a Message-Id
seen before is ignored and False returned (Odoo: "found duplicated Message-Id");
no route raises the same fault Odoo does (code 1, a traceback ending in
``ValueError: No possible route found for incoming message from ...``). Wrong
credentials give fault 3 "Access Denied", an unknown database the psycopg2 fault.

``--behaviour`` makes it fail on purpose, to test the mailgate's exit codes:
``transient`` (a serialization failure fault), ``http-500``, ``garbage`` (HTML
instead of XML-RPC), ``slow:SECONDS`` (answer late), ``crash`` (an unexpected
application error).

Run it as a process (``python -m mailstack.lab.odoo_standin --listen 127.0.20.5:8069
--db FILE --database odoo --alias sales@example.net --password-file FILE``) or from
Python with ``OdooStandIn(...).start()`` / ``.stop()`` (optionally inside a network
namespace); ``OdooStandIn.messages()`` reads what was stored.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from xmlrpc.server import (
    MultiPathXMLRPCServer,
    SimpleXMLRPCDispatcher,
    SimpleXMLRPCRequestHandler,
)

from mailstack.lab.binaries import binary
from mailstack.lab.process import stop_child

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
ROUTE_HEADERS = ("Delivered-To", "To", "Cc", "Resent-To", "Resent-Cc")
BEHAVIOURS = ("ok", "transient", "http-500", "garbage", "crash")
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT,
    raw BLOB NOT NULL,
    routes TEXT NOT NULL,
    subject TEXT,
    email_from TEXT
)
"""


def _traceback_fault(exception_line: str) -> xmlrpc.client.Fault:
    """A fault shaped like Odoo 17's ``xmlrpc_handle_exception_int`` for an arbitrary
    exception: code 1 and the formatted traceback as faultString."""
    text = (
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3/dist-packages/odoo/service/model.py", line 156, in dispatch\n'
        "    result = execute_kw(db, uid, *params)\n"
        f"{exception_line}\n"
    )
    return xmlrpc.client.Fault(1, text)


@dataclass
class Store:
    """The SQLite file holding processed messages (one connection per call: threads)."""

    path: Path

    def __post_init__(self) -> None:
        with self._connect() as db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def known(self, message_id: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM messages WHERE message_id = ?", (message_id,)).fetchone() is not None

    def add(self, message_id: str, raw: bytes, routes: list[str], subject: str, email_from: str) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO messages (message_id, raw, routes, subject, email_from) VALUES (?, ?, ?, ?, ?)",
                (message_id, raw, ",".join(routes), subject, email_from),
            )
            return int(cursor.lastrowid or 0)

    def rows(self, message_id: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM messages" + (" WHERE message_id = ?" if message_id else "") + " ORDER BY id"
        with self._connect() as db:
            return [dict(row) for row in db.execute(query, (message_id,) if message_id else ())]


@dataclass
class Odoo:
    """The behaviour behind the XML-RPC endpoints (also usable without a server)."""

    store: Store
    database: str
    password: str
    aliases: frozenset[str]
    login_name: str = "admin"
    uid: int = 2
    behaviour: str = "ok"
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- /xmlrpc/2/common ---------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return {
            "server_version": "17.0",
            "server_version_info": [17, 0, 0, "final", 0, ""],
            "server_serie": "17.0",
            "protocol_version": 1,
        }

    def authenticate(self, db: str, login: str, password: str, user_agent_env: dict[str, Any] | None = None) -> int | bool:
        self._check_database(db)
        return self.uid if (login == self.login_name and password == self.password) else False

    def login(self, db: str, login: str, password: str) -> int | bool:
        return self.authenticate(db, login, password, {})

    # -- /xmlrpc/2/object ---------------------------------------------------------
    def execute_kw(self, db: str, uid: int, password: str, model: str, method: str,
                   args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> Any:
        if self.delay:
            time.sleep(self.delay)
        self._check_database(db)
        if uid != self.uid or password != self.password:
            raise xmlrpc.client.Fault(3, "Access Denied")
        args, kwargs = list(args or []), dict(kwargs or {})
        if self.behaviour == "transient":
            raise _traceback_fault(
                "psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update"
            )
        if self.behaviour == "crash":
            raise _traceback_fault("TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'")
        if (model, method) == ("mail.thread", "message_process"):
            return self.message_process(*args, **kwargs)
        if (model, method) == ("mail.message", "search_read"):
            return self.search_read(*args, **kwargs)
        raise _traceback_fault(f"AttributeError: The method '{method}' does not exist on the model '{model}'")

    def message_process(self, model: Any, message: Any, custom_values: Any = None, save_original: bool = False,
                        strip_attachments: bool = False, thread_id: Any = None) -> int | bool:
        raw = message.data if isinstance(message, xmlrpc.client.Binary) else str(message).encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        message_id = (parsed.get("Message-Id") or "").strip()
        recipients = [addr.lower() for _, addr in email.utils.getaddresses(
            [str(value) for header in ROUTE_HEADERS for value in parsed.get_all(header, [])]
        ) if addr]
        routes = sorted({addr for addr in recipients if self._alias_of(addr)})
        with self.lock:
            if message_id and self.store.known(message_id):
                return False
            if not routes and not model:
                raise _traceback_fault(
                    "ValueError: No possible route found for incoming message from "
                    f"{parsed.get('From', '')} to {parsed.get('To', '')} (Message-Id {message_id}:). "
                    "Create an appropriate mail.alias or force the destination model."
                )
            return self.store.add(message_id, raw, routes, str(parsed.get("Subject", "")), str(parsed.get("From", "")))

    def search_read(self, domain: list[Any] | None = None, fields: list[str] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        message_id = None
        for term in domain or []:
            if isinstance(term, (list, tuple)) and len(term) == 3 and term[0] == "message_id" and term[1] == "=":
                message_id = str(term[2])
        result = []
        for row in self.store.rows(message_id):
            record = {
                "id": row["id"], "message_id": row["message_id"], "subject": row["subject"],
                "email_from": row["email_from"], "model": "mail.thread", "res_id": row["id"],
                "routes": row["routes"].split(",") if row["routes"] else [],
            }
            if fields:
                record = {k: v for k, v in record.items() if k in fields or k == "id"}
            result.append(record)
        limit = kwargs.get("limit")
        return result[: int(limit)] if limit else result

    def _alias_of(self, address: str) -> bool:
        local, _, domain = address.partition("@")
        return address in self.aliases or f"{local.partition('+')[0]}@{domain}" in self.aliases

    def _check_database(self, db: str) -> None:
        if db != self.database:
            raise _traceback_fault(
                f'psycopg2.OperationalError: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
                f'failed: FATAL:  database "{db}" does not exist'
            )


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/xmlrpc/2/common", "/xmlrpc/2/object")

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        behaviour = getattr(self.server, "behaviour", "ok")
        if behaviour in ("http-500", "garbage"):
            length = int(self.headers.get("content-length", 0))
            self.rfile.read(length)
            status, body = (500, b"Internal Server Error") if behaviour == "http-500" else (200, b"<html>maintenance</html>")
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no passwords in logs either
        return


class _Server(ThreadingMixIn, MultiPathXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(address: str, port: int, odoo: Odoo) -> _Server:
    """A ready (bound, not yet serving) server for ``odoo``."""
    server = _Server((address, port), requestHandler=_Handler, logRequests=False, allow_none=True, use_builtin_types=False)
    server.behaviour = odoo.behaviour  # type: ignore[attr-defined]
    common = SimpleXMLRPCDispatcher(allow_none=True)
    for name in ("version", "authenticate", "login"):
        common.register_function(getattr(odoo, name), name)
    obj = SimpleXMLRPCDispatcher(allow_none=True)
    obj.register_function(odoo.execute_kw, "execute_kw")  # type: ignore[arg-type]
    server.add_dispatcher("/xmlrpc/2/common", common)
    server.add_dispatcher("/xmlrpc/2/object", obj)
    return server


@dataclass
class OdooStandIn:
    """Start/stop the stand-in as a child process (optionally in a network namespace).

    ``password`` is written to a 0600 file passed by path, never put in argv."""

    workdir: Path
    address: str
    #: 0: any free port; after ``start()`` the bound one (a restart reuses it).
    port: int = 8069
    database: str = "odoo"
    password: str = "odoo-standin-password"
    aliases: Sequence[str] = ()
    netns: str | None = None
    behaviour: str = "ok"
    login_name: str = "admin"
    uid: int = 2
    process: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.workdir / "odoo-standin.sqlite3"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        password_file = self.workdir / "odoo-standin.password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password)
        command = [
            sys.executable, "-m", "mailstack.lab.odoo_standin", "--listen", f"{self.address}:{self.port}",
            "--db", str(self.db_path), "--database", self.database, "--password-file", str(password_file),
            "--login", self.login_name, "--uid", str(self.uid), "--behaviour", self.behaviour,
        ]
        for alias in self.aliases:
            command += ["--alias", alias]
        return [binary("ip"), "netns", "exec", self.netns, *command] if self.netns else command

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "odoo-standin.ready").unlink(missing_ok=True)
        # Its database, log and password file hold mail and a secret: 0600, whatever
        # the caller's umask.
        fd = os.open(self.workdir / "odoo-standin.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.process = subprocess.Popen(self.command(), cwd=PROJECT_ROOT, stdout=fd, stderr=fd, start_new_session=True, umask=0o077)
        os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Odoo stand-in exited with {self.process.returncode}: see {self.workdir / 'odoo-standin.log'}")
            if self._ready():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the Odoo stand-in did not listen on {self.address}:{self.port} within {timeout}s")

    def _ready(self) -> bool:
        # The server writes the marker once bound (works inside a namespace too): its
        # PID and port, so port 0 (any free port) works.
        marker = self.workdir / "odoo-standin.ready"
        try:
            fields = marker.read_text().split()
        except FileNotFoundError:
            return False
        if len(fields) < 2:
            return False
        self.port = int(fields[1])
        return True

    def stop(self) -> None:
        """Stop the process (by its PID) and wait for it."""
        stop_child(self.process)
        (self.workdir / "odoo-standin.ready").unlink(missing_ok=True)
        self.process = None

    def messages(self) -> list[dict[str, Any]]:
        """What Odoo stored: id, message_id, raw (bytes), routes, subject, email_from."""
        if not self.db_path.exists():
            return []
        return Store(self.db_path).rows()

    def __enter__(self) -> OdooStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="odoo_standin", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT, e.g. 127.0.20.5:8069")
    parser.add_argument("--db", required=True, type=Path, help="SQLite file for processed messages")
    parser.add_argument("--database", default="odoo", help="the Odoo database name clients must use")
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--login", default="admin")
    parser.add_argument("--uid", type=int, default=2)
    parser.add_argument("--alias", action="append", default=[], help="an address Odoo routes (repeat)")
    parser.add_argument("--behaviour", default="ok", help=f"one of {', '.join(BEHAVIOURS)} or slow:SECONDS")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    behaviour, delay = args.behaviour, 0.0
    if behaviour.startswith("slow:"):
        behaviour, delay = "ok", float(behaviour.split(":", 1)[1])
    elif behaviour not in BEHAVIOURS:
        parser.error(f"--behaviour {behaviour!r} is not one of {', '.join(BEHAVIOURS)} or slow:SECONDS")
    odoo = Odoo(
        Store(args.db), args.database, args.password_file.read_text().strip(),
        frozenset(a.lower() for a in args.alias), args.login, args.uid, behaviour, delay,
    )
    server = serve(address.strip("[]"), int(port), odoo)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    ready = args.db.parent / "odoo-standin.ready"
    ready.with_suffix(".tmp").write_text(f"{os.getpid()} {server.server_address[1]}\n")
    ready.with_suffix(".tmp").replace(ready)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        ready.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
