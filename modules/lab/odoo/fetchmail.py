"""``fetchmail.server`` and the "Mail: Fetchmail Service" cron, as in Odoo 17.0.

Odoo 17.0 keeps fetchmail in ``addons/mail/models/fetchmail.py`` (read in copy [B],
``bragadossantos/odoo`` @ 3c0f43f2; spec §11). The IMAP sequence is Odoo's exactly:
connect (``IMAP4_SSL`` when ``is_ssl``, else plain ``IMAP4`` — no STARTTLS; the
certificate is not verified, Python's default for imaplib), ``LOGIN``, ``SELECT``
(INBOX), ``SEARCH UNSEEN``, then per message ``FETCH (RFC822)``, ``STORE -FLAGS \\Seen``,
``message_process(object_id.model, …)``, ``STORE +FLAGS \\Seen``, commit.

**Seen flag.** Stock 17.0 stores ``+FLAGS \\Seen`` whether processing succeeded or
failed, so a message that failed once (Odoo down mid-way, a database serialization
error) is never fetched again — it stays in the mailbox, read, and not in Odoo. The
stand-in does exactly that by default (``seen="always"``): a stand-in more lenient
than Odoo would hide this. ``seen="after-success"`` models the fix the mailstack issue
asks for (design.md: mark Seen only after success, cf. odoo/odoo PR #58500): a failed
message keeps \\Unseen and is retried on the next run. Tests run both.

POP3 is declared as in Odoo but not fetched: the lab has no POP server to prove it
against, so ``fetch_mail`` logs that and skips POP servers.

The cron runs ``_fetch_mails`` every ``interval_number`` ``interval_type`` while it is
active; ``_update_cron`` (create/write/unlink) activates it exactly when a confirmed
non-local server exists. ``Settings.minute`` scales Odoo's minute for tests (60 s in
the lab).
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import threading
import time
from typing import Any

from mailstack.lab.odoo.model import Model
from mailstack.lab.odoo.orm import Env, Field, Store, UserError, now, transaction
from mailstack.lab.odoo.routing import message_process

MAIL_TIMEOUT = 60
CRON_XMLID = "mail.ir_cron_mail_gateway_action"
UNITS = {"minutes": 1, "hours": 60, "days": 1440, "weeks": 10080, "months": 43200}
log = logging.getLogger("odoo.addons.mail.models.fetchmail")


class FetchmailServer(Model):
    """``fetchmail.server`` (Incoming Mail Server)."""

    _name = "fetchmail.server"
    _description = "Incoming Mail Server"
    _order = "priority"
    fields = {
        "name": Field("char", required=True, string="Name"),
        "active": Field("boolean", default=True),
        "state": Field("selection", default="draft", selection=("draft", "done"), readonly=True),
        "server": Field("char"),
        "port": Field("integer"),
        "server_type": Field("selection", required=True, default="imap", selection=("imap", "pop", "local")),
        "is_ssl": Field("boolean", default=False),
        "attach": Field("boolean", default=True),
        "original": Field("boolean", default=False),
        "date": Field("datetime", readonly=True),
        "user": Field("char"),
        "password": Field("char"),
        "object_id": Field("many2one", comodel="ir.model", string="Create a New Record"),
        "priority": Field("integer", default=5),
        "configuration": Field("text", readonly=True),
        "script": Field("char", default="/mail/static/scripts/odoo-mailgate.py"),
    }
    rpc_methods = ("button_confirm_login", "fetch_mail", "set_draft")

    def _after_create(self, ids: list[int]) -> None:
        self._update_cron()

    def _after_write(self, ids: list[int], vals: dict[str, Any]) -> None:
        self._update_cron()

    def _after_unlink(self, ids: list[int]) -> None:
        self._update_cron()

    def _update_cron(self) -> None:
        """``_update_cron``: the cron is active iff a confirmed non-local server exists."""
        if self.env.context.get("fetchmail_cron_running"):
            return
        self.env["ir.cron"].toggle(model=self._name, domain=[("state", "=", "done"), ("server_type", "!=", "local")])  # type: ignore[attr-defined]

    def set_draft(self, ids: list[int]) -> bool:
        self.write(ids, {"state": "draft"})
        return True

    def connect(self, record: dict[str, Any], allow_archived: bool = False) -> imaplib.IMAP4:
        """``connect``: IMAP4_SSL or IMAP4, then LOGIN (POP is not modelled)."""
        if not allow_archived and not record.get("active", True):
            raise UserError(f'The server "{record.get("name")}" cannot be used because it is archived.')
        if record.get("server_type") != "imap":
            raise UserError(f"the stand-in fetches by IMAP only, not {record.get('server_type')}")
        host, port = str(record.get("server") or ""), int(record.get("port") or 0)
        connection: imaplib.IMAP4
        if record.get("is_ssl"):
            connection = imaplib.IMAP4_SSL(host, port, ssl_context=ssl._create_unverified_context(), timeout=MAIL_TIMEOUT)  # noqa: S323
        else:
            connection = imaplib.IMAP4(host, port, timeout=MAIL_TIMEOUT)
        connection.login(str(record.get("user") or ""), str(record.get("password") or ""))
        return connection

    def button_confirm_login(self, ids: list[int]) -> bool:
        """``button_confirm_login``: connect, then ``state = done``; errors as Odoo words them."""
        for record_id in ids:
            record = self.row(record_id)
            if record is None:
                continue
            connection = None
            try:
                connection = self.connect(record, allow_archived=True)
                self.write([record_id], {"state": "done"})
            except (socket.gaierror, TimeoutError, imaplib.IMAP4.abort) as err:
                raise UserError(f"No response received. Check server information.\n {err}") from None
            except imaplib.IMAP4.error as err:
                raise UserError(f"Server replied with following exception:\n {err}") from None
            except ssl.SSLError as err:
                raise UserError(f"An SSL exception occurred. Check SSL/TLS configuration on server port.\n {err}") from None
            except UserError:
                raise
            except OSError as err:
                raise UserError(f"Connection test failed: {err}") from None
            finally:
                if connection is not None:
                    try:
                        connection.logout()
                    except (OSError, imaplib.IMAP4.error):
                        pass
        return True

    def fetch_mail(self, ids: list[int]) -> bool:
        """``fetch_mail``: Odoo's IMAP sequence for each server, a commit per message."""
        context = {**self.env.context, "fetchmail_cron_running": True}
        seen_policy = getattr(self.env.config, "fetchmail_seen", "always")
        for record_id in ids:
            record = self.row(record_id)
            if record is None:
                continue
            if record.get("server_type") != "imap":
                log.info("the stand-in does not fetch %s servers (%s)", record.get("server_type"), record.get("name"))
                continue
            model = (self.env["ir.model"].row(int(record["object_id"])) or {}).get("model") if record.get("object_id") else False
            count = failed = 0
            imap = None
            try:
                imap = self.connect(record)
                imap.select()
                _, data = imap.search(None, "(UNSEEN)")
                for num in data[0].split():
                    _, fetched = imap.fetch(num.decode(), "(RFC822)")
                    imap.store(num.decode(), "-FLAGS", "\\Seen")
                    ok = False
                    try:
                        self.env.context = context
                        message_process(self.env, model or False, _rfc822(fetched), save_original=bool(record.get("original")),
                                        strip_attachments=not record.get("attach", True))
                        ok = True
                    except Exception:  # noqa: BLE001 - Odoo logs every failure and goes on
                        log.info("Failed to process mail from imap server %s.", record.get("name"), exc_info=True)
                        failed += 1
                    if ok or seen_policy == "always":
                        imap.store(num.decode(), "+FLAGS", "\\Seen")
                    self.env.db.execute("COMMIT")  # self._cr.commit()
                    self.env.db.execute("BEGIN IMMEDIATE")
                    count += 1
                log.info("Fetched %d email(s) on imap server %s; %d succeeded, %d failed.", count, record.get("name"), count - failed, failed)
            except Exception:  # noqa: BLE001
                log.info("General failure when trying to fetch mail from imap server %s.", record.get("name"), exc_info=True)
            finally:
                if imap is not None:
                    try:
                        imap.close()
                        imap.logout()
                    except (OSError, imaplib.IMAP4.error):
                        log.warning("Failed to properly finish imap connection: %s.", record.get("name"))
            self.env.context = {k: v for k, v in context.items() if k != "fetchmail_cron_running"}
            self.env.update(self._name, record_id, {"date": now()})
        return True


def _rfc822(fetched: list[Any]) -> bytes:
    for item in fetched:
        if isinstance(item, tuple) and len(item) == 2:
            return bytes(item[1])
    raise UserError("the IMAP server returned no message")


class Cron(threading.Thread):
    """The cron worker: runs "Mail: Fetchmail Service" when due (Odoo's cron thread
    wakes every minute; this one every scaled second)."""

    def __init__(self, store: Store, registry: dict[str, Model], config: Any, uid: int) -> None:
        super().__init__(name="odoo-cron", daemon=True)
        self.store, self.registry, self.config, self.uid = store, registry, config, uid
        self.stopping = threading.Event()
        self.next_run = 0.0
        self.runs = 0

    def run(self) -> None:
        minute = float(getattr(self.config, "minute", 60.0))
        while not self.stopping.wait(max(0.05, minute / 60)):
            try:
                self.tick(minute)
            except Exception:  # noqa: BLE001 - a failed run is logged, the worker lives on
                log.exception("cron run failed")

    def tick(self, minute: float) -> None:
        with transaction(self.store, self.registry, self.uid, config=self.config) as env:
            cron = env.ref(CRON_XMLID)
            if cron is None or not cron.get("active"):
                self.next_run = 0.0
                return
            if self.next_run and time.monotonic() < self.next_run:
                return
            interval = int(cron.get("interval_number") or 1) * UNITS.get(str(cron.get("interval_type")), 1) * minute
            self.next_run = time.monotonic() + interval
            servers = env["fetchmail.server"]
            ids = servers.search([("state", "=", "done"), ("server_type", "!=", "local")])
            servers.fetch_mail(ids)  # type: ignore[attr-defined]
            env.update("ir.cron", cron["id"], {"lastcall": now()})
            self.runs += 1
