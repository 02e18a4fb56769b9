"""The mail the stand-in sends itself (the bounces of the mail gateway), sent as Odoo
17 sends it: ``mail.mail.send`` → ``ir.mail_server.send_email`` over SMTP.

The server is chosen by ``ir.mail_server._find_mail_server`` over the
``ir.mail_server`` records, else odoo.conf's ``smtp_*`` options with
``mail.default.from_filter`` (or odoo.conf's ``from_filter``); the From is rewritten
and the envelope sender chosen by ``_prepare_email_message`` — both from
``mailstack.rules.odoo``, transcribed from Odoo 17.0's ``ir_mail_server.py`` (spec §9,
copy [B]). The message is submitted over a real SMTP session (in the lab: to the
gateway, which DKIM-signs and relays it like any mail Odoo sends). A failed send is
logged and the message process goes on, as ``mail.mail.send(raise_exception=False)``
does. Every attempt is recorded in the ``outbox`` table for tests to read.
"""

from __future__ import annotations

import email.policy
import random
import smtplib
import ssl
import string
import time
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any

from mailstack.lab.odoo.orm import Env
from mailstack.rules.odoo import MailServer, find_mail_server, prepare_envelope

SMTP_TIMEOUT = 60
#: CRLF, folding only past 998: message ids in References stay intact (as Odoo's build_email writes them).
POLICY = email.policy.SMTP.clone(max_line_length=998)


def tracking_message_id(env: Env, res_id: str) -> str:
    """``tools.generate_tracking_message_id``: ``<rnd.time-openerp-res_id@host>``."""
    rnd = "".join(random.choices(string.digits, k=13))
    host = getattr(env.config, "hostname", None) or "localhost"
    return f"<{rnd}.{time.time():.15f}-openerp-{res_id}@{host}>"


def _servers(env: Env) -> list[tuple[MailServer, dict[str, Any]]]:
    servers = env["ir.mail_server"]
    return [(MailServer(r["id"], str(r.get("name")), r.get("from_filter") or None, int(r.get("sequence") or 10), bool(r.get("active", True))), r)
            for r in servers.rows()]


def send_mail(env: Env, values: dict[str, Any]) -> None:
    """Build one ``mail.mail`` and send it at once; auto-deleted (only the outbox remains).
    Never raises: like ``mail.mail.send(raise_exception=False)`` a failure is recorded."""
    mail_from, recipients, raw, error = "", [a for _, a in getaddresses([str(values.get("email_to") or "")]) if "@" in a], b"", None
    try:
        mail_from, raw = _build(env, values)
        _submit(env, mail_from, recipients, raw)
    except Exception as err:  # noqa: BLE001 - Odoo logs a failed mail and goes on
        error = f"{type(err).__name__}: {err}"
    env.db.execute("INSERT INTO outbox (mail_from, rcpt_to, raw, sent_at, error) VALUES (?, ?, ?, ?, ?)",
                   (mail_from, ",".join(recipients), raw, time.time(), error))


def _build(env: Env, values: dict[str, Any]) -> tuple[str, bytes]:
    """The envelope sender and the message bytes; picks the server into ``env.context``."""
    companies = env["res.company"]
    company = companies.rows()[0] if companies.rows() else None
    config = env.config
    notifications = (companies.value(company, "default_from_email") if company else None) or getattr(config, "email_from", None)
    bounce = companies.value(company, "bounce_email") if company else None
    default_filter = env.param("mail.default.from_filter", getattr(config, "from_filter", None) or False)
    servers = _servers(env)
    header_from = str(values["email_from"])
    choice = find_mail_server(header_from, [s for s, _ in servers], notifications or None, default_filter or None)
    record = next((r for s, r in servers if choice.server and s.id == choice.server.id), None)
    env.context["mail_server"] = record
    session_filter = (record.get("from_filter") or None) if record else (default_filter or None)
    envelope = prepare_envelope(header_from, choice.smtp_from, bounce or getattr(config, "email_from", None) or header_from,
                                notifications or None, session_filter)
    message = EmailMessage(policy=POLICY)
    message["Message-Id"] = tracking_message_id(env, "message-notify")
    message["Date"] = formatdate(usegmt=True)
    message["From"] = envelope.header_from
    message["To"] = str(values["email_to"])
    message["Subject"] = str(values.get("subject") or "")
    message["Reply-To"] = str(values.get("reply_to") or values["email_from"])
    if values.get("references"):
        message["References"] = str(values["references"])
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(str(values.get("body_html") or ""), subtype="html")
    return envelope.mail_from, message.as_bytes()


def _submit(env: Env, mail_from: str, recipients: list[str], raw: bytes) -> None:
    """One SMTP session to the chosen server (``ir.mail_server.connect``)."""
    record, config = env.context.pop("mail_server", None), env.config
    if record is not None:
        host, port = record.get("smtp_host"), int(record.get("smtp_port") or 25)
        encryption, user, password = record.get("smtp_encryption") or "none", record.get("smtp_user"), record.get("smtp_pass")
    else:
        host, port = getattr(config, "smtp_server", None), int(getattr(config, "smtp_port", None) or 25)
        encryption = "starttls" if getattr(config, "smtp_ssl", False) else "none"
        user, password = getattr(config, "smtp_user", None), getattr(config, "smtp_password", None)
    if not host:
        raise ValueError("Missing SMTP Server\nPlease define at least one SMTP server, or provide the SMTP parameters explicitly.")
    if not recipients:
        raise ValueError("no valid recipient")
    source = getattr(config, "smtp_source", None)
    helo = getattr(config, "hostname", None)
    # Whether Odoo 17 verifies the SMTP server's certificate is not in the spec; the
    # stand-in does not (the lab's gateway certificate is self-signed).
    context = ssl._create_unverified_context()  # noqa: S323
    client: smtplib.SMTP
    if encryption == "ssl":
        client = smtplib.SMTP_SSL(str(host), port, local_hostname=helo, timeout=SMTP_TIMEOUT,
                                  source_address=(source, 0) if source else None, context=context)
    else:
        client = smtplib.SMTP(str(host), port, local_hostname=helo, timeout=SMTP_TIMEOUT, source_address=(source, 0) if source else None)
    with client:
        client.ehlo()
        if encryption == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if user:
            client.login(str(user), str(password or ""))
        client.sendmail(mail_from, recipients, raw)
