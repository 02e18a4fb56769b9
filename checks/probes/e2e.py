"""End-to-end probes: real messages through the real mail path, and where they arrive.

Fetch side of the ``e2e`` checks (``mailstack.checks.groups.e2e`` and ``e2e_inbound``
evaluate). Everything that differs between the lab and production comes from
``E2eSettings``: the lab sets it through environment variables (``mailstack lab
check``); against production the same variables name the receiving mailbox, the
outside sender, and Odoo's user and password (never in argv).

* Outbound: a message built the way its sender builds it (From the sending name, the
  envelope sender the profile uses) is submitted to the sender's server — a gateway's
  submission port as Odoo does, or the submission endpoint of a third party's service —
  and looked for, by its unique Message-ID, in the receiving server's Maildir, where
  ``mailstack.checks.probes.verdicts`` reads the verdicts that server added.
* Inbound: one message per alias and header (To, Cc, Bcc) from the outside sender goes
  to the MX hosts DNS names (``ctx.resolver``); the probe then asks Odoo by XML-RPC
  (``mail.message.search_read``) for each Message-ID, or looks in the mailbox
  provider's Maildir when the stack keeps its mailboxes there (IMAP, forwarding).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import os
import smtplib
import socket
import ssl
import threading
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
SUBMISSION_PORT = 587
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


def endpoint(text: str, default_port: int = 25) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port or default_port)
    return text, default_port


@dataclass(frozen=True, slots=True)
class ThirdParty:
    """Where a probe for one non-gateway sender is submitted (a simulated service in
    the lab), and what the report should say about it."""

    submit: tuple[str, int]
    source: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class E2eSettings:
    """Where probes go and where to look for them (from ``MAILSTACK_E2E_*``)."""

    enabled: bool = False
    #: Where Odoo submits (default: every gateway's IPv4 address, submission port) and
    #: from which address.
    submit: tuple[tuple[str, int], ...] = ()
    submit_source: str | None = None
    #: Odoo's SMTP AUTH login on the submission port (``gateway.smtpAuth``):
    #: ``MAILSTACK_E2E_SUBMIT_USER`` and ``_SUBMIT_PASSWORD`` (or ``_SUBMIT_PASSWORD_FILE``).
    submit_login: tuple[str, str] | None = field(default=None, repr=False)
    #: The outbound probes' recipient, one reached over IPv6 only (proves a gateway's
    #: ip6: term and AAAA), the receiving server's Maildir and its authserv-id.
    recipient: str | None = None
    recipient_ipv6: str | None = None
    maildir: Path | None = None
    authserv_id: str | None = None
    #: Submission endpoints of the third-party senders, by e2e sender id (odoo,
    #: microsoft, google, mailjet, spf-<n>): ``MAILSTACK_E2E_THIRD_PARTIES``, a JSON file.
    third_parties: dict[str, tuple[ThirdParty, ...]] = field(default_factory=dict)
    #: The outside sender of inbound probes and the address it connects from.
    sender: str = DEFAULT_SENDER
    sender_source: str | None = None
    sender_source_ipv6: str | None = None
    #: The local part of inbound probes where the stack declares no alias.
    alias: str | None = None
    #: Odoo's login and password for XML-RPC (``MAILSTACK_ODOO_LOGIN``/``_PASSWORD``).
    odoo_login: str | None = None
    odoo_password: str | None = field(default=None, repr=False)
    #: The stand-in's SQLite store (lab only): the stored message, byte for byte.
    odoo_store: Path | None = None
    wait: float = DEFAULT_WAIT

    @classmethod
    def from_env(cls) -> E2eSettings:
        password = secret_from_env("MAILSTACK_ODOO_PASSWORD")
        maildir, store, third = _env("MAILDIR"), _env("ODOO_STORE"), _env("THIRD_PARTIES")
        submit_user, submit_password = _env("SUBMIT_USER"), secret_from_env(f"{ENV_PREFIX}_SUBMIT_PASSWORD")
        return cls(
            enabled=os.environ.get(ENV_PREFIX, "").lower() in ("1", "true", "yes"),
            submit=tuple(endpoint(e, SUBMISSION_PORT) for e in (_env("SUBMIT") or "").split(",") if e.strip()),
            submit_source=_env("SUBMIT_SOURCE"),
            submit_login=(submit_user, submit_password or "") if submit_user else None,
            recipient=_env("RECIPIENT"),
            recipient_ipv6=_env("RECIPIENT_IPV6"),
            maildir=Path(maildir) if maildir else None,
            authserv_id=_env("AUTHSERV_ID"),
            third_parties=_third_parties(Path(third)) if third else {},
            sender=_env("SENDER") or DEFAULT_SENDER,
            sender_source=_env("SENDER_SOURCE"),
            sender_source_ipv6=_env("SENDER_SOURCE_IPV6"),
            alias=_env("ALIAS"),
            odoo_login=os.environ.get("MAILSTACK_ODOO_LOGIN"),
            odoo_password=password,
            odoo_store=Path(store) if store else None,
            wait=float(_env("WAIT") or DEFAULT_WAIT),
        )


def _third_parties(path: Path) -> dict[str, tuple[ThirdParty, ...]]:
    """``{"odoo": [{"submit": "127.0.60.5:587", "source": null, "note": "..."}], ...}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        sender: tuple(ThirdParty(endpoint(e["submit"], SUBMISSION_PORT), e.get("source"), e.get("note", "")) for e in entries)
        for sender, entries in data.items()
    }


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
           source: str | None, helo: str, timeout: float = 30.0, login: tuple[str, str] | None = None) -> float:
    """One SMTP transaction; returns the time DATA was accepted. 5xx → ProbeRejected,
    anything else that stops it → ProbeError. ``login``: SMTP AUTH (user, password)
    after STARTTLS, as Odoo does with ``smtp_user``; a server without AUTH or one that
    refuses the login refuses the probe."""
    try:
        with smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout,
                          source_address=(source, 0) if source else None) as client:
            # smtplib sends the final ".\r\n" as a segment of its own: without
            # TCP_NODELAY each DATA waits ~40 ms for the delayed ACK.
            if client.sock is not None:
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.ehlo()
            if client.has_extn("starttls"):
                # As a sending MTA (and Odoo with smtp_ssl) does: encrypt when offered, so a
                # submission port that requires TLS takes the probe. The certificate is
                # judged by smtp.starttls, not here.
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                client.starttls(context=context)
                client.ehlo()
            if login is not None:
                try:
                    client.login(*login)
                except smtplib.SMTPAuthenticationError as err:
                    reply = err.smtp_error
                    _raise_for(err.smtp_code, reply if isinstance(reply, bytes) else str(reply).encode(), "AUTH")
                except smtplib.SMTPNotSupportedError as err:
                    raise ProbeRejected(f"AUTH refused: the server offers no AUTH after STARTTLS ({err})") from err
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


def message_id_of(raw: bytes) -> str:
    """The Message-ID header of a raw message ('' when absent)."""
    header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw).get("Message-ID", "")
    return str(header).strip()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message found in a Maildir: where, and its bytes as delivered."""

    path: Path
    raw: bytes
    found_at: float


class MaildirIndex:
    """The messages of a Maildir tree (``*/new``, ``*/cur``) by Message-ID, read once
    each; concurrent probes share one index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[Path, str] = {}
        self._lock = threading.Lock()

    def _scan(self) -> None:
        for path in [*self.root.glob("**/new/*"), *self.root.glob("**/cur/*")]:
            if path in self._seen or not path.is_file():
                continue
            try:
                with path.open("rb") as handle:
                    head = handle.read(65536).split(b"\n\n", 1)[0]
            except OSError:
                continue
            self._seen[path] = message_id_of(head + b"\n\n")

    def find(self, message_id: str) -> list[Path]:
        with self._lock:
            self._scan()
            return [p for p, m in self._seen.items() if m == message_id]

    def wait(self, message_id: str, deadline: float) -> Delivery | None:
        """The first delivery of ``message_id``; None if none by ``deadline`` (time.time())."""
        while True:
            found = self.find(message_id)
            if found:
                return Delivery(found[0], found[0].read_bytes(), time.time())
            if time.time() > deadline:
                return None
            time.sleep(0.05)


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
