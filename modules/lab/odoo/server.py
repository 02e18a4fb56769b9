"""The stand-in's XML-RPC endpoints, answering as Odoo 17's ``/xmlrpc/2`` does.

``/xmlrpc/2/common``: ``version``, ``authenticate``, ``login``. ``/xmlrpc/2/object``:
``execute_kw`` (and ``execute``) on the models of ``registry()`` — the ORM methods plus
each model's public methods; private methods (``_x``) are refused as Odoo refuses
them (``AccessError``, fault 4).

Marshalling follows Odoo 17.0's ``odoo/addons/base/controllers/rpc.py`` (copy [C],
``nguyenmanhdat006/quan_ly_kho_odoo`` @ fa29e2cd; spec §8): the method runs in a
transaction that is committed when it returns, *then* the result is marshalled with
``allow_none=False`` — so a ``None`` (``message_process`` after loop detection) becomes
fault 1 with a traceback ending ``TypeError: cannot marshal None unless allow_none is
enabled``, its side effects (a bounce sent) kept. Exceptions map as
``xmlrpc_handle_exception_int`` maps them: AccessError → 4, AccessDenied → 3,
UserError/ValidationError → 2 (the message), anything else → 1 (the traceback).

``Behaviour`` makes the server fail on purpose, to test the mailgate's exit codes:
``transient`` (a serialization-failure fault), ``http-500``, ``garbage`` (HTML instead
of XML-RPC), ``slow:SECONDS`` (answer late), ``crash`` (an unexpected error).
"""

from __future__ import annotations

import logging
import time
import traceback
import xmlrpc.client
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mailstack.lab.odoo import fetchmail, settings, threads
from mailstack.lab.odoo.model import Model
from mailstack.lab.odoo.orm import AccessDenied, AccessError, Store, UserError, transaction
from mailstack.lab.odoo.routing import message_process

BEHAVIOURS = ("ok", "transient", "http-500", "garbage", "crash")
log = logging.getLogger("odoo.service")


@dataclass
class Settings:
    """What a real Odoo reads from odoo.conf and its host, for the stand-in."""

    database: str = "odoo"
    login: str = "admin"
    password: str = ""
    uid: int = 2
    behaviour: str = "ok"
    delay: float = 0.0
    #: odoo.conf's outgoing options (used when no ir.mail_server record exists).
    smtp_server: str | None = None
    smtp_port: int = 25
    smtp_ssl: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    email_from: str | None = None
    from_filter: str | None = None
    #: The address outgoing SMTP connects from, and the name Odoo says in EHLO.
    smtp_source: str | None = None
    hostname: str = "localhost"
    #: Seconds in one of Odoo's minutes (cron intervals); 60 outside tests.
    minute: float = 60.0
    #: fetchmail's \\Seen handling: "always" (stock 17.0) or "after-success".
    fetchmail_seen: str = "always"


def registry() -> dict[str, Model]:
    """Every model the stand-in has, by name."""
    classes: list[type[Model]] = [
        settings.MailAliasDomain, settings.MailAlias, settings.ResCompany, settings.ResPartner,
        settings.IrConfigParameter, settings.IrModel, settings.IrModelData, settings.IrMailServer,
        settings.MailGatewayAllowed, settings.IrCron, fetchmail.FetchmailServer,
        threads.MailMessage, threads.MailThread, *threads.THREAD_MODELS,
    ]
    return {cls._name: cls() for cls in classes}


def _traceback_fault(exception_line: str) -> xmlrpc.client.Fault:
    """Fault 1 with a traceback whose last line is ``exception_line``."""
    text = ("Traceback (most recent call last):\n"
            '  File "/usr/lib/python3/dist-packages/odoo/service/model.py", line 156, in dispatch\n'
            "    result = execute_kw(db, uid, *params)\n"
            f"{exception_line}\n")
    return xmlrpc.client.Fault(1, text)


class Odoo:
    """The behaviour behind the endpoints (usable without HTTP in unit tests)."""

    def __init__(self, store: Store, config: Settings) -> None:
        self.store, self.config, self.registry = store, config, registry()

    # -- /xmlrpc/2/common ------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return {"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""],
                "server_serie": "17.0", "protocol_version": 1}

    def authenticate(self, db: str, login: str, password: str, user_agent_env: Any = None) -> int | bool:
        self._check_database(db)
        return self.config.uid if (login == self.config.login and password == self.config.password) else False

    def login(self, db: str, login: str, password: str) -> int | bool:
        return self.authenticate(db, login, password, {})

    # -- /xmlrpc/2/object ------------------------------------------------------------------
    def execute_kw(self, db: str, uid: int, password: str, model: str, method: str,
                   args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> Any:
        if self.config.delay:
            time.sleep(self.config.delay)
        self._check_database(db)
        if uid != self.config.uid or password != self.config.password:
            raise AccessDenied("Access Denied")
        if self.config.behaviour == "transient":
            raise _traceback_fault("psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update")
        if self.config.behaviour == "crash":
            raise _traceback_fault("TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'")
        if method.startswith("_"):
            raise AccessError(f"Private methods (such as {model}.{method}) cannot be called remotely.")
        if model not in self.registry:
            raise KeyError(model)
        args, kwargs = list(args or []), dict(kwargs or {})
        context = kwargs.pop("context", None) or {}
        with transaction(self.store, self.registry, uid, context, self.config) as env:
            target = env[model]
            if (model, method) == ("mail.thread", "message_process"):
                return message_process(env, *args, **kwargs)
            if method not in target.ORM_METHODS and method not in target.rpc_methods:
                raise AttributeError(f"The method '{method}' does not exist on the model '{model}'")
            return getattr(target, method)(*args, **kwargs)

    def execute(self, db: str, uid: int, password: str, model: str, method: str, *args: Any) -> Any:
        return self.execute_kw(db, uid, password, model, method, list(args), {})

    def _check_database(self, db: str) -> None:
        if db != self.config.database:
            raise _traceback_fault(
                f'psycopg2.OperationalError: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
                f'failed: FATAL:  database "{db}" does not exist')

    # -- marshalling -------------------------------------------------------------------------
    def respond(self, service: str, body: bytes) -> bytes:
        """One XML-RPC request → the response body (always HTTP 200, as Odoo answers)."""
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
            functions = {"common": ("version", "authenticate", "login"), "object": ("execute_kw", "execute")}[service]
            if method not in functions:
                raise AttributeError(f"No such method {method!r} in service {service!r}")
            result = getattr(self, str(method))(*params)
        except Exception as err:  # noqa: BLE001 - every exception becomes Odoo's fault
            return xmlrpc.client.dumps(_fault(err), methodresponse=True, allow_none=False).encode()
        if result is None:
            log.warning("The method %s of the object %s can not return `None`!", method, params[3] if len(params) > 3 else "")
        try:
            return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False).encode()
        except TypeError as err:  # None, after the transaction was committed
            return xmlrpc.client.dumps(_fault(err), methodresponse=True, allow_none=False).encode()


def _fault(err: BaseException) -> xmlrpc.client.Fault:
    """``xmlrpc_handle_exception_int`` of Odoo 17."""
    if isinstance(err, xmlrpc.client.Fault):
        return err
    if isinstance(err, AccessError):
        return xmlrpc.client.Fault(4, str(err))
    if isinstance(err, AccessDenied):
        return xmlrpc.client.Fault(3, str(err))
    if isinstance(err, UserError):
        return xmlrpc.client.Fault(2, str(err))
    return xmlrpc.client.Fault(1, "".join(traceback.format_exception(type(err), err, err.__traceback__)))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("content-length", 0))
        body = self.rfile.read(length)
        behaviour = self.server.odoo.config.behaviour
        prefix = "/xmlrpc/2/"
        if behaviour in ("http-500", "garbage"):
            status, payload, kind = (500, b"Internal Server Error", "text/html") if behaviour == "http-500" else (200, b"<html>maintenance</html>", "text/html")
        elif self.path.startswith(prefix) and self.path[len(prefix):] in ("common", "object"):
            status, payload, kind = 200, self.server.odoo.respond(self.path[len(prefix):], body), "text/xml"
        else:
            status, payload, kind = 404, b"Not Found", "text/html"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no passwords in logs either
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    odoo: Odoo


def serve(address: str, port: int, odoo: Odoo) -> _Server:
    """A bound (not yet serving) HTTP server for ``odoo``."""
    server = _Server((address, port), _Handler)
    server.odoo = odoo
    return server
