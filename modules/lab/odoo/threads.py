"""Documents that receive mail, and the messages posted on them.

``mail.message`` holds what Odoo's chatter shows (its ``message_id`` is what the
duplicate check and reply threading look up); the stand-in keeps each inbound
message's raw bytes beside it (the ``raws`` table, never an Odoo field), so tests can
prove the gateway delivered it byte for byte. ``crm.lead``, ``helpdesk.ticket`` and
``project.task`` stand for the models Odoo's aliases create records in
(``message_new``) and replies update (``message_update``); ``message_partner_ids`` are
their followers (the ``followers`` contact policy asks them).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mailstack.lab.odoo.model import Model
from mailstack.lab.odoo.orm import Field, now


class MailMessage(Model):
    """``mail.message``: one posted message of a document's chatter."""

    _name = "mail.message"
    _description = "Message"
    _order = "id desc"
    _rec_name = "subject"
    fields = {
        "message_id": Field("char", string="Message-Id"),
        "model": Field("char"),
        "res_id": Field("integer"),
        "record_name": Field("char"),
        "subject": Field("char"),
        "email_from": Field("char"),
        "author_id": Field("many2one", comodel="res.partner"),
        "body": Field("text"),
        "message_type": Field("selection", default="email", selection=("email", "comment", "notification", "user_notification", "auto_comment")),
        "parent_id": Field("many2one", comodel="mail.message"),
        "reply_to": Field("char"),
        "date": Field("datetime"),
        "create_date": Field("datetime", readonly=True),
    }

    def post(self, values: dict[str, Any], raw: bytes | None, routes: list[str]) -> int:
        """Store one message (``message_post``/``message_notify``) and its raw bytes."""
        created = self.create({**values, "date": values.get("date") or now()})
        assert isinstance(created, int)
        self.env.update(self._name, created, {"x_routes": ",".join(routes)})
        if raw is not None:
            self.env.db.execute("INSERT INTO raws (id, raw) VALUES (?, ?)", (created, raw))
        return created


class MailThreadModel(Model):
    """A model that inherits ``mail.thread``: creates records from mail, takes replies."""

    _description = "Document"
    accepts_mail: ClassVar[bool] = True
    fields = {
        "name": Field("char"),
        "email_from": Field("char"),
        "partner_id": Field("many2one", comodel="res.partner"),
        "message_partner_ids": Field("text", default="[]"),
        "create_date": Field("datetime", readonly=True),
    }

    def followers(self, record_id: int) -> list[int]:
        """The partner ids following a record (``message_partner_ids``)."""
        import json

        row = self.row(record_id)
        return [int(p) for p in json.loads(str((row or {}).get("message_partner_ids") or "[]"))]

    def message_new(self, msg_dict: dict[str, Any], custom_values: dict[str, Any] | None = None) -> int:
        """``mail.thread.message_new``: a record named after the subject, from the sender."""
        values = {"name": msg_dict.get("subject") or "(no subject)", "email_from": msg_dict.get("email_from") or False,
                  "partner_id": msg_dict.get("author_id") or False}
        values.update({k: v for k, v in (custom_values or {}).items() if k in self.fields})
        created = self.create(values)
        assert isinstance(created, int)
        return created

    def message_update(self, msg_dict: dict[str, Any], update_vals: dict[str, Any] | None = None) -> bool:
        """``mail.thread.message_update``: nothing to change on a reply here."""
        return True


class CrmLead(MailThreadModel):
    _name = "crm.lead"
    _description = "Lead/Opportunity"


class HelpdeskTicket(MailThreadModel):
    _name = "helpdesk.ticket"
    _description = "Helpdesk Ticket"


class ProjectTask(MailThreadModel):
    _name = "project.task"
    _description = "Task"


class MailThread(Model):
    """``mail.thread``: the abstract model ``message_process`` is called on."""

    _name = "mail.thread"
    _description = "Email Thread"
    fields = {}
    rpc_methods = ("message_process",)


#: The documents aliases may target, with their ``ir.model`` names.
THREAD_MODELS: tuple[type[MailThreadModel], ...] = (CrmLead, HelpdeskTicket, ProjectTask)
