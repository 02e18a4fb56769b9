"""Odoo 17's mail gateway: ``mail.thread.message_process`` and what it calls.

Each function names the Odoo 17.0 function of ``addons/mail/models/mail_thread.py`` it
models (unless noted), as read in the 17.0 copies of /work/research/odoo17-spec.md:
[A] ``filesdna/filesdna17-setup`` @ 86228921 (mail_thread.py) and [B]
``bragadossantos/odoo`` @ 3c0f43f2 (models.py, mail_alias.py), cross-checked against
``odoo/odoo`` @ 64ab0c2e (18.x). No ``odoo/odoo`` 17.0 commit could be cited (spec §0).
Where [A] and [B] differ the stand-in follows [A] (the duplicate check also looks at
``X-Odoo-Message-Id``). What Odoo renders from QWeb templates (the bounce bodies) was
not verified; the stand-in writes its own short text there.

The order of ``message_route`` is the point: bounces first, then replies (References /
In-Reply-To) before any alias, then the direct-write-to-catchall bounce, then aliases
by exact ``alias_full_name`` (no ``+detail`` stripping exists in 17.0), then the fallback
model, then the catchall-plus-unroutable bounce, else ``ValueError("No possible route
found …")``.
"""

from __future__ import annotations

import ast
import email
import email.policy
import time
import xmlrpc.client
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

from mailstack.lab.odoo.bounces import (
    Route,
    alias_bounce_incoming_email,
    catchall_bounce,
    detect_loop_headers,
    detect_loop_sender,
)
from mailstack.lab.odoo.headers import formatted, header, split
from mailstack.lab.odoo.orm import Env
from mailstack.lab.odoo.threads import MailMessage, MailThreadModel
from mailstack.rules.odoo import email_normalize, formataddr


def message_parse(env: Env, message: EmailMessage) -> dict[str, Any]:
    """``message_parse``: ``to`` = Delivered-To + To, ``recipients`` = those + Cc +
    Resent-To + Resent-Cc; a missing Message-Id becomes ``<time@localhost>``."""
    message_id = str(message.get("Message-Id") or "").strip() or f"<{time.time()}@localhost>"
    froms = getaddresses([str(message.get("From") or "")])
    email_from = formataddr(froms[0]) if froms and froms[0][1] else str(message.get("From") or "")
    msg_dict: dict[str, Any] = {
        "message_id": message_id,
        "x_odoo_message_id": str(message.get("X-Odoo-Message-Id") or "").strip(),
        "subject": str(message.get("Subject") or ""),
        "email_from": email_from,
        "from": email_from,
        "cc": header(message, "Cc"),
        "to": formatted(header(message, "Delivered-To"), header(message, "To")),
        "recipients": formatted(*(header(message, h) for h in ("Delivered-To", "To", "Cc", "Resent-To", "Resent-Cc"))),
        "references": str(message.get("References") or ""),
        "in_reply_to": str(message.get("In-Reply-To") or "").strip(),
        "body": _body(message),
    }
    msg_dict["parent_id"] = _parent_message(env, msg_dict)
    msg_dict.update(_extract_bounce(message, msg_dict, env))
    return msg_dict


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html")) if message.is_multipart() else message
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, KeyError, ValueError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _references(msg_dict: dict[str, Any]) -> list[str]:
    text = msg_dict.get("references") or msg_dict.get("in_reply_to") or ""
    return [f"<{ref.strip('<>')}>" for ref in text.replace(",", " ").split() if ref.strip("<>")]


def _parent_message(env: Env, msg_dict: dict[str, Any]) -> int | bool:
    """``_get_parent_message``: exact In-Reply-To, else any References id, newest first."""
    messages = env["mail.message"]
    if msg_dict["in_reply_to"]:
        found = messages.search([("message_id", "=", msg_dict["in_reply_to"])], limit=1)
        if found:
            return int(found[0])
    refs = [r for r in str(msg_dict.get("references") or "").split() if r]
    found = messages.search([("message_id", "in", refs)], limit=1, order="create_date desc, id desc") if refs else []
    return int(found[0]) if found else False


def detect_is_bounce(env: Env, message: EmailMessage, msg_dict: dict[str, Any]) -> bool:
    """``_detect_is_bounce``: a To equal to some domain's ``bounce_email`` (exactly: no
    VERP ``bounce+…@`` parsing in 17.0), a From local part ``mailer-daemon``, or a
    ``multipart/report`` / delivery-status content type."""
    domains = env["mail.alias.domain"]
    bounces = [domains.value(d, "bounce_email") for d in domains.rows()]
    if bounces and any((email_normalize(e) or e) in bounces for e in split(msg_dict["to"]) or [""]):
        return True
    froms = split(msg_dict["email_from"])
    if froms and froms[0].rpartition("@")[0].lower() == "mailer-daemon":
        return True
    content_type = message.get_content_type()
    return content_type == "multipart/report" or "report-type=delivery-status" in str(message.get("Content-Type", ""))


def _extract_bounce(message: EmailMessage, msg_dict: dict[str, Any], env: Env) -> dict[str, Any]:
    """``_message_parse_extract_bounce``: ``is_bounce`` and the Final-Recipient of a DSN."""
    if not detect_is_bounce(env, message, msg_dict):
        return {"is_bounce": False}
    bounced = ""
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in part.get_payload() if isinstance(part.get_payload(), list) else []:
                final = block.get("Final-Recipient") if hasattr(block, "get") else None
                if final:
                    bounced = email_normalize(str(final).partition(";")[2].strip()) or ""
    return {"is_bounce": True, "bounced_email": bounced}


def detect_write_to_catchall(env: Env, msg_dict: dict[str, Any], any_to: bool = False) -> bool:
    """``_detect_write_to_catchall``: every (or, in step 4, any) ``to`` address — not Cc —
    is some domain's ``catchall_email``."""
    domains = env["mail.alias.domain"]
    catchalls = [domains.value(d, "catchall_email") for d in domains.rows()]
    tos = [email_normalize(e) or e for e in split(msg_dict["to"]) or [""]]
    if any_to:
        return bool(catchalls) and any(t in catchalls for t in tos)
    return bool(catchalls) and bool(tos) and all(t in catchalls for t in tos)


def _aliases(env: Env, addresses: list[str], local_parts: list[str], model: str | None = None, exclude_model: str | None = None) -> list[dict[str, Any]]:
    """Aliases whose ``alias_full_name`` is one of ``addresses``, or whose name is one of
    ``local_parts`` with ``alias_incoming_local`` set (message_route's searches)."""
    aliases = env["mail.alias"]
    ids = aliases.search(["|", ("alias_full_name", "in", addresses), "&", ("alias_name", "in", local_parts),
                          ("alias_incoming_local", "=", True)])
    found = [aliases.row(int(i)) for i in ids]
    result = []
    for alias in found:
        if alias is None:
            continue
        target = (env["ir.model"].row(int(alias["alias_model_id"])) or {}).get("model")
        if (model and target != model) or (exclude_model and target == exclude_model):
            continue
        result.append(alias)
    return result


def _local_parts(env: Env, addresses: list[str]) -> list[str]:
    """``_filter_excluded_local_part``: the left part, unchanged (no +detail stripping),
    or nothing for a domain outside ``mail.catchall.domain.allowed`` when it is set."""
    allowed_text = env.param("mail.catchall.domain.allowed")
    allowed = [d.strip().lower() for d in str(allowed_text).split(",") if d.strip()] if allowed_text else []
    if allowed:
        allowed += [str(d.get("name")) for d in env.rows("mail.alias.domain")]
    parts = []
    for address in addresses:
        local, _, domain = address.partition("@")
        if domain and (not allowed or domain in allowed):
            parts.append(local)
    return parts


def message_route(env: Env, message: EmailMessage, msg_dict: dict[str, Any], model: str | None = None,
                  thread_id: int | None = None, custom_values: dict[str, Any] | None = None) -> list[Route]:
    """``message_route``: the routes ``(model, thread_id, custom_values, uid, alias)``."""
    if msg_dict.get("is_bounce"):
        # _routing_handle_bounce: bookkeeping on the bounced partner only; no mail sent.
        return []
    references = [r for r in _references(msg_dict) if "reply_to" not in r]
    reply = None
    if references:
        found = env["mail.message"].search([("message_id", "in", references)], limit=1, order="id desc")
        reply = env["mail.message"].row(int(found[0])) if found else None
    reply_model, reply_thread = (reply.get("model"), reply.get("res_id")) if reply else (None, None)
    email_to = [e.lower() for e in split(msg_dict["to"]) or [""]]
    rcpt_tos = [e.lower() for e in split(msg_dict["recipients"]) or [""]]
    valid_rcpts = list(rcpt_tos)
    if reply_model and reply_thread:
        # Step 1a: a forward to an alias of another model is not a reply.
        others = _aliases(env, email_to, _local_parts(env, email_to), exclude_model=str(reply_model))
        if others:
            valid_rcpts = [str(env["mail.alias"].value(a, "alias_full_name")) for a in others]
            reply_model = None
    if reply_model and reply_thread:
        # Step 1b: a reply goes to its thread; a same-model alias' contact policy applies.
        dest = _aliases(env, rcpt_tos, _local_parts(env, rcpt_tos), model=str(reply_model))[:1]
        route = routing_check_route(env, message, msg_dict, (str(reply_model), int(reply_thread), dict(custom_values or {}), env.uid, dest[0] if dest else None), False)
        if route:
            return [route]  # type: ignore[list-item]
        if route is False:
            return []
    if rcpt_tos:  # always true in 17.0: the list holds at least ''
        msg_dict.pop("parent_id", None)
        if detect_write_to_catchall(env, msg_dict):
            catchall_bounce(env, message, msg_dict)
            return []
        dest_aliases = _aliases(env, valid_rcpts, _local_parts(env, valid_rcpts))
        if dest_aliases:
            # Every matching alias is a route (in mail.alias' _order); the list is
            # returned even when the contact policies refused them all.
            routes: list[Route] = []
            for alias in sorted(dest_aliases, key=lambda a: (a["alias_model_id"], a.get("alias_name") or "")):
                target = str((env["ir.model"].row(int(alias["alias_model_id"])) or {}).get("model"))
                defaults = ast.literal_eval(str(alias.get("alias_defaults") or "{}"))
                route = (target, int(alias.get("alias_force_thread_id") or 0), defaults, env.uid, alias)
                checked = routing_check_route(env, message, msg_dict, route, True)
                if checked:
                    routes.append(checked)  # type: ignore[arg-type]
            return routes
    if model:
        msg_dict.pop("parent_id", None)
        fallback = routing_check_route(env, message, msg_dict, (model, thread_id, dict(custom_values or {}), env.uid, None), True)
        if isinstance(fallback, tuple) and fallback:
            return [fallback]
    if rcpt_tos and detect_write_to_catchall(env, msg_dict, any_to=True):
        catchall_bounce(env, message, msg_dict)
        return []
    raise ValueError(
        f"No possible route found for incoming message from {msg_dict['email_from']} to {msg_dict['to']} "
        f"(Message-Id {msg_dict['message_id']}:). Create an appropriate mail.alias or force the destination model."
    )


def routing_check_route(env: Env, message: EmailMessage, msg_dict: dict[str, Any], route: Route, raise_exception: bool) -> Route | tuple[()] | bool:
    """``_routing_check_route``: an unknown model or one that takes no mail is
    "Mailbox unavailable" (raised when asked), a missing thread falls back to creation,
    an alias' contact policy (``_alias_get_error``) refused → the alias bounce, False."""
    model, thread_id, custom_values, uid, alias = route
    if model not in env.registry or not isinstance(env.registry[model], MailThreadModel):
        reason = "target model unspecified" if not model else f"unknown target model {model}"
        if raise_exception:
            raise ValueError(f"Mailbox unavailable - {reason}")
        return ()
    documents = env[model]
    assert isinstance(documents, MailThreadModel)
    if thread_id and documents.row(int(thread_id)) is None:
        thread_id = None  # "reply to missing document, fall back on document creation"
    if not msg_dict.get("author_id"):
        froms = split(msg_dict["email_from"])
        partners = env["res.partner"]
        found = [p for p in partners.rows() if froms and partners.value(p, "email_normalized") == email_normalize(froms[0])]
        msg_dict["author_id"] = found[0]["id"] if found else False
    if alias is not None:
        error = alias_get_error(env, documents, thread_id, alias, msg_dict)
        if error:
            alias_bounce_incoming_email(env, message, msg_dict, alias, error)
            return False
    return (model, thread_id, custom_values, uid, alias)


def alias_get_error(env: Env, documents: MailThreadModel, thread_id: int | None, alias: dict[str, Any], msg_dict: dict[str, Any]) -> tuple[str, bool] | None:
    """``BaseModel._alias_get_error`` (addons/mail/models/models.py): (reason, is a
    configuration error) or None. ``followers`` needs a reference record (the thread,
    else the alias' parent record) whose followers include the author; ``partners``
    needs a known author."""
    contact = alias.get("alias_contact") or "everyone"
    author = msg_dict.get("author_id")
    if contact == "followers":
        record_model, record_id = (documents, thread_id) if thread_id else (None, None)
        if record_id is None and alias.get("alias_parent_model_id") and alias.get("alias_parent_thread_id"):
            parent_model = (env["ir.model"].row(int(alias["alias_parent_model_id"])) or {}).get("model")
            parent = env.registry.get(str(parent_model))
            if isinstance(parent, MailThreadModel):
                record_model, record_id = env[str(parent_model)], int(alias["alias_parent_thread_id"])  # type: ignore[assignment]
        if record_model is None or record_id is None:
            return ("incorrectly configured alias (unknown reference record)", True)
        assert isinstance(record_model, MailThreadModel)
        if not author or int(author) not in record_model.followers(record_id):
            return ("restricted to followers", False)
    elif contact == "partners" and not author:
        return ("restricted to known authors", False)
    return None


def message_route_process(env: Env, message: EmailMessage, raw: bytes, msg_dict: dict[str, Any], routes: list[Route]) -> int | bool:
    """``_message_route_process``: ``message_update`` a thread or ``message_new`` a
    record per route, mark the alias valid, post the message; the last record's id."""
    result: int | bool = False
    for model, thread_id, custom_values, _uid, alias in routes:
        documents = env[model]
        assert isinstance(documents, MailThreadModel)
        if thread_id:
            documents.message_update(msg_dict)
            record_id = int(thread_id)
        else:
            record_id = documents.message_new(msg_dict, custom_values)
            if alias is not None:
                env.update("mail.alias", alias["id"], {"alias_status": "valid"})
        result = record_id
        route_name = str(env["mail.alias"].value(alias, "alias_full_name")) if alias else f"{model},{record_id}"
        messages = env["mail.message"]
        assert isinstance(messages, MailMessage)
        messages.post({
            "message_id": msg_dict["message_id"], "model": model, "res_id": record_id, "subject": msg_dict["subject"],
            "email_from": msg_dict["email_from"], "author_id": msg_dict.get("author_id") or False, "body": msg_dict["body"],
            "parent_id": msg_dict.get("parent_id") or False, "message_type": "email",
        }, raw, [route_name])
    return result


def message_process(env: Env, model: str | bool, message: Any, custom_values: dict[str, Any] | None = None,
                    save_original: bool = False, strip_attachments: bool = False, thread_id: int | None = None) -> int | bool | None:
    """``message_process``: parse, drop a duplicate Message-Id (False), drop a reply to
    Odoo's own bounce (None), route (may raise), drop a looping sender (None), process."""
    raw = bytes(message.data) if isinstance(message, xmlrpc.client.Binary) else (
        message.encode("utf-8") if isinstance(message, str) else bytes(message))
    parsed = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(parsed, EmailMessage)
    msg_dict = message_parse(env, parsed)
    ids = [msg_dict["message_id"], *([msg_dict["x_odoo_message_id"]] if msg_dict["x_odoo_message_id"] else [])]
    if env["mail.message"].search([("message_id", "in", ids)], limit=1):
        return False
    if detect_loop_headers(msg_dict):
        return None
    routes = message_route(env, parsed, msg_dict, str(model) if model else None, thread_id, custom_values)
    if detect_loop_sender(env, parsed, msg_dict, routes):
        return None
    return message_route_process(env, parsed, raw, msg_dict, routes)

