"""End-to-end probes: real messages through the real mail path, and where they arrive.

Fetch side of the ``e2e`` checks (``mailstack.checks.groups.e2e`` evaluates). Everything that
differs between the lab and production comes from ``E2eSettings``: the lab sets it
through environment variables (``mailstack lab check``); against production the same
variables name the outside sender, and Odoo's user and password (never in argv).

* Outbound: a message built like Odoo's (From the notifications address, envelope
  sender the bounce address) is submitted to the gateway; the recipient MTA records it
  with its SPF/DKIM/DMARC verdicts in a spool directory, where the probe looks for its
  unique Message-ID.
* Inbound: one message per alias and header (To, Cc, Bcc) from the outside sender goes
  to the domain's MX as DNS says (``ctx.resolver``); the probe then asks Odoo by
  XML-RPC (``mail.message.search_read``) for each Message-ID.
"""

from __future__ import annotations

import email.utils
import json
import os
import smtplib
import socket
import time
import uuid
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailstack.checks.probes.secret_env import secret_from_env

ENV_PREFIX = "MAILSTACK_E2E"
DEFAULT_WAIT = 60.0
DEFAULT_SENDER = "probe@mailstack-check.invalid"
#: Lines that test transparency on the way: dot-stuffing, mbox "From " escaping,
#: 8-bit UTF-8, trailing spaces.
BODY_LINES = (
    "This is a mailstack end-to-end probe; it can be deleted.",
    ".a line starting with a dot",
    "From the start of a line (mbox would escape this)",
    "Grüße, ünïcödé — 8-bit body",
    "trailing spaces   ",
)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"{ENV_PREFIX}_{name}", default)


def _endpoint(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "25")
    return host, int(port or 25)


@dataclass(frozen=True, slots=True)
class E2eSettings:
    """Where probes go and where to look for them (from ``MAILSTACK_E2E_*``)."""

    enabled: bool = False
    #: Where Odoo submits (default: the stack's first gateway, port 25) and from which address.
    submit: tuple[str, int] | None = None
    submit_source: str | None = None
    #: The outbound probe's recipient, and the recipient MTA's spool (lab).
    recipient: str | None = None
    recipient_spool: Path | None = None
    #: The outside sender of inbound probes and the address it connects from.
    sender: str = DEFAULT_SENDER
    sender_source: str | None = None
    #: Odoo's login and password for XML-RPC (``MAILSTACK_ODOO_LOGIN``/``_PASSWORD``).
    odoo_login: str | None = None
    odoo_password: str | None = field(default=None, repr=False)
    #: The stand-in's SQLite store (lab only): the stored message, byte for byte.
    odoo_store: Path | None = None
    wait: float = DEFAULT_WAIT

    @classmethod
    def from_env(cls) -> E2eSettings:
        password = secret_from_env("MAILSTACK_ODOO_PASSWORD")
        spool, store = _env("RECIPIENT_SPOOL"), _env("ODOO_STORE")
        return cls(
            enabled=os.environ.get(ENV_PREFIX, "").lower() in ("1", "true", "yes"),
            submit=_endpoint(_env("SUBMIT")),
            submit_source=_env("SUBMIT_SOURCE"),
            recipient=_env("RECIPIENT"),
            recipient_spool=Path(spool) if spool else None,
            sender=_env("SENDER") or DEFAULT_SENDER,
            sender_source=_env("SENDER_SOURCE"),
            odoo_login=os.environ.get("MAILSTACK_ODOO_LOGIN"),
            odoo_password=password,
            odoo_store=Path(store) if store else None,
            wait=float(_env("WAIT") or DEFAULT_WAIT),
        )


class ProbeError(Exception):
    """The probe could not be sent or looked for (connection, SMTP 4xx): undecided."""


class ProbeRejected(Exception):
    """The mail path refused the probe for good (SMTP 5xx): decided."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One message sent: its Message-ID, envelope, body and when it was accepted."""

    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes
    body: bytes
    sent_at: float
    label: str = ""


def build(message_id: str, headers: dict[str, str], label: str) -> tuple[bytes, bytes]:
    """A probe message (CRLF line ends, 8-bit UTF-8 body) and its body bytes."""
    lines = [f"{name}: {value}" for name, value in headers.items()]
    lines += [
        f"Message-ID: {message_id}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    body = "\r\n".join((*BODY_LINES, f"probe: {label} {message_id}")) + "\r\n"
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body.encode("utf-8")
    return raw, body.encode("utf-8")


def probe_sender(sender: str, message_id: str) -> str:
    """The sender of one inbound probe: ``local+<probe token>@domain``. Odoo 17's loop
    detection (``_detect_loop_sender``) drops the 21st message one address sends within
    120 minutes (``mail.gateway.loop.threshold``/``minutes``), so probes from one fixed
    address would stop reaching Odoo after a few check runs."""
    local, _, domain = sender.rpartition("@")
    if "+" in local:
        return sender
    token = message_id.strip("<>").split("@", 1)[0].rsplit("-", 1)[-1][:12]
    return f"{local}+{token}@{domain}"


def new_message_id(kind: str, domain: str) -> str:
    """A unique Message-ID per probe: probes never collide with each other or earlier runs."""
    return f"<mailstack-e2e-{kind}-{uuid.uuid4().hex}@{domain}>"


def submit(host: str, port: int, probe_from: str, recipients: list[str], raw: bytes, *,
           source: str | None, helo: str, timeout: float = 30.0) -> float:
    """One SMTP transaction; returns the time DATA was accepted. 5xx → ProbeRejected,
    anything else that stops it → ProbeError."""
    try:
        with smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout,
                          source_address=(source, 0) if source else None) as client:
            client.ehlo()
            code, reply = client.mail(probe_from, ["BODY=8BITMIME"] if client.has_extn("8bitmime") else [])
            _raise_for(code, reply, "MAIL FROM")
            for recipient in recipients:
                code, reply = client.rcpt(recipient)
                _raise_for(code, reply, f"RCPT TO:<{recipient}>")
            code, reply = client.data(raw)
            _raise_for(code, reply, "DATA")
            return time.time()
    except (OSError, smtplib.SMTPException) as err:
        raise ProbeError(f"SMTP to {host}:{port}: {type(err).__name__}: {err}") from err


def _raise_for(code: int, reply: bytes, step: str) -> None:
    text = reply.decode(errors="replace")
    if code >= 500:
        raise ProbeRejected(f"{step} refused: {code} {text}")
    if code >= 400:
        raise ProbeError(f"{step} deferred: {code} {text}")


def wait_for_recipient(spool: Path, message_id: str, deadline: float) -> dict[str, Any] | None:
    """The recipient MTA's record of ``message_id`` (verdicts included), None if it has
    not arrived by ``deadline`` (a time.time() value)."""
    while True:
        for path in sorted(spool.glob("*.json")):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if entry.get("message_id") == message_id:
                entry["path"] = str(path.with_suffix(".eml"))
                return dict(entry)
        if time.time() > deadline:
            return None
        time.sleep(0.2)


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> Any:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


@dataclass
class OdooClient:
    """Odoo's external API: authenticate once, then ``mail.message.search_read``."""

    url: str
    database: str
    login: str
    password: str = field(repr=False)
    timeout: float = 15.0
    uid: int | None = None

    def _proxy(self, path: str) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(f"{self.url.rstrip('/')}/xmlrpc/2/{path}", transport=_TimeoutTransport(self.timeout), allow_none=True)

    def messages(self, message_id: str) -> list[dict[str, Any]]:
        """The mail.message records with this Message-ID. Raises OSError (Odoo
        unreachable) or xmlrpc.client.Fault; PermissionError for bad credentials."""
        return self._search_read("mail.message", [["message_id", "=", message_id]], ["message_id", "model", "res_id", "body"])

    def alias_model(self, address: str) -> str | None:
        """The model of the alias whose full address is ``address`` (None: no alias)."""
        found = self._search_read("mail.alias", [["alias_full_name", "=", address]], ["alias_model_id"])
        if not found or not found[0].get("alias_model_id"):
            return None
        model_id = found[0]["alias_model_id"][0]
        models = self._search_read("ir.model", [["id", "=", model_id]], ["model"])
        return str(models[0]["model"]) if models else None

    def _search_read(self, model: str, domain: list[Any], fields: list[str]) -> list[dict[str, Any]]:
        if self.uid is None:
            uid = self._proxy("common").authenticate(self.database, self.login, self.password, {})
            if not uid:
                raise PermissionError(f"Odoo refused login {self.login!r} on database {self.database!r}")
            self.uid = int(uid)  # type: ignore[arg-type]
        result = self._proxy("object").execute_kw(self.database, self.uid, self.password, model, "search_read", [domain], {"fields": fields})
        return list(result)  # type: ignore[arg-type]


def wait_for_odoo(client: OdooClient, message_id: str, deadline: float) -> tuple[list[dict[str, Any]], float | None, str]:
    """Poll Odoo for ``message_id`` until found or ``deadline``: (records, time found,
    last error text). Unreachable Odoo is retried (an outage queues mail, it does not
    lose it), bad credentials are not."""
    last_error = ""
    while True:
        try:
            found = client.messages(message_id)
            if found:
                return found, time.time(), ""
            last_error = ""
        except PermissionError:
            raise
        except (OSError, xmlrpc.client.ProtocolError, xmlrpc.client.Fault, socket.timeout) as err:
            last_error = f"{type(err).__name__}: {err}"
        if time.time() > deadline:
            return [], None, last_error
        time.sleep(0.3)
