"""The mail Odoo 17's gateway sends back, and its loop detection.

``_routing_create_bounce_email`` and its callers (the direct write to the catchall in
``message_route``, ``mail.alias._alias_bounce_incoming_email``), ``_detect_loop_headers``
and ``_detect_loop_sender`` of ``addons/mail/models/mail_thread.py`` (copy [A],
``filesdna/filesdna17-setup`` @ 86228921; mail_alias.py from [B], ``bragadossantos/odoo``
@ 3c0f43f2; /work/research/odoo17-spec.md §5.3, §6, §7). The bodies Odoo renders from
QWeb templates were not verified (spec §12): the stand-in writes its own short text.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from mailstack.lab.odoo import mailing
from mailstack.lab.odoo.headers import header, split
from mailstack.lab.odoo.orm import Env, ago
from mailstack.lab.odoo.threads import MailThreadModel
from mailstack.rules.odoo import email_normalize, formataddr

Route = tuple[str, Any, dict[str, Any], int, dict[str, Any] | None]
LOOP_MARK = "-loop-detection-bounce-email@"


def catchall_bounce(env: Env, message: EmailMessage, msg_dict: dict[str, Any]) -> None:
    """The mail.mail_bounce_catchall bounce (template text not verified: ours)."""
    company = env.rows("res.company")[0] if env.rows("res.company") else {}
    body = ("<p>Dear Sender,<br/><br/>The message below could not be accepted by the address "
            f"{env['res.company'].value(company, 'catchall_email') if company else ''}. Only replies to a conversation are. "
            f"Please contact {company.get('name', 'us')} directly.</p>")
    routing_create_bounce_email(env, msg_dict["email_from"], body, message,
                                references=f"{msg_dict['message_id']} {mailing.tracking_message_id(env, 'loop-detection-bounce-email')}",
                                reply_to=company.get("email") or False)


def alias_bounce_incoming_email(env: Env, message: EmailMessage, msg_dict: dict[str, Any], alias: dict[str, Any], error: tuple[str, bool]) -> None:
    """``mail.alias._alias_bounce_incoming_email`` (mail_alias.py): a configuration error
    marks the alias invalid; the sender gets the alias' bounce (the copy Odoo also sends
    to the alias' creator is not modelled: the stand-in has no res.users)."""
    reason, config_error = error
    full = env["mail.alias"].display_name(alias)
    if config_error:
        env.update("mail.alias", alias["id"], {"alias_status": "invalid"})
        body = f"<p>Your message could not be accepted by the address {full}. Please try again later or contact us instead.</p>"
    else:
        policy = {"partners": "known contacts", "followers": "followers of the related document"}.get(str(alias.get("alias_contact")), "")
        body = str(alias.get("alias_bounced_content") or "") or (
            f"<p>The message below could not be accepted by the address {full}. Only {policy} are allowed to contact it.</p>")
    routing_create_bounce_email(env, msg_dict["email_from"], body, message, references=msg_dict["message_id"])


def routing_create_bounce_email(env: Env, email_from: str, body_html: str, message: EmailMessage, **mail_values: Any) -> None:
    """``_routing_create_bounce_email``: to the Return-Path (else the sender), From
    ``"MAILER-DAEMON" <company bounce_email>``, subject ``Re: <subject>``, sent at once."""
    bounce_to = header(message, "Return-Path") or email_from
    companies = env["res.company"]
    rows = companies.rows()
    bounce_from = companies.value(rows[0], "bounce_email") if rows else False
    sender = formataddr(("MAILER-DAEMON", str(bounce_from))) if bounce_from else str(message.get("To") or "")
    mailing.send_mail(env, {"body_html": body_html, "subject": f"Re: {message.get('subject')}", "email_to": bounce_to,
                            "email_from": sender, **mail_values})


def detect_loop_headers(msg_dict: dict[str, Any]) -> bool:
    """``_detect_loop_headers``: a reply to one of Odoo's own bounces."""
    return LOOP_MARK in f"{msg_dict.get('references') or ''} {msg_dict.get('in_reply_to') or ''}"


def detect_loop_sender(env: Env, message: EmailMessage, msg_dict: dict[str, Any], routes: list[Route]) -> bool:
    """``_detect_loop_sender``: ``mail.gateway.loop.threshold`` (20) records created, or
    messages posted on one record, by this sender within ``mail.gateway.loop.minutes``
    (120) — unless the sender is in ``mail.gateway.allowed`` — sends the "too many
    emails" bounce and answers True."""
    froms = split(msg_dict["email_from"])
    sender = email_normalize(froms[0]) if froms else None
    allowed = env["mail.gateway.allowed"]
    if not sender or any(allowed.value(a, "email_normalized") == sender for a in allowed.rows()):
        return False
    minutes = int(env.param("mail.gateway.loop.minutes", 120))
    threshold = int(env.param("mail.gateway.loop.threshold", 20))
    since = ago(minutes)
    for model, thread_id, _values, _uid, _alias in routes:
        if model not in env.registry or not isinstance(env.registry[model], MailThreadModel):
            continue
        if thread_id == 0:
            created = [r for r in env.rows(model, since=since, contains={"email_from": sender})
                       if str(r.get("create_date", "")) >= since and sender in str(r.get("email_from") or "").lower()]
            if len(created) >= threshold:
                break
        elif thread_id:
            posted = [m for m in env.rows("mail.message", equal={"model": [model], "res_id": [thread_id]}, since=since)
                      if m.get("model") == model and m.get("res_id") == thread_id
                      and str(m.get("create_date", "")) >= since
                      and (sender in str(m.get("email_from") or "").lower() or (msg_dict.get("author_id") and m.get("author_id") == msg_dict["author_id"]))]
            if len(posted) >= threshold:
                break
    else:
        return False
    body = f"<p>Hello,<br/><br/>We have received too many emails from you ({threshold} in {minutes} minutes); this one was not processed.</p>"
    routing_create_bounce_email(env, msg_dict["email_from"], body, message,
                                references=f"{msg_dict['message_id']} {mailing.tracking_message_id(env, 'loop-detection-bounce-email')}")
    return True
