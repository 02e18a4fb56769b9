"""One Odoo mail-settings record managed by mailstack: the operations behind the provider.

A managed record is described by a property bag (the Pulumi provider's inputs and
outputs, plain values, secrets unwrapped): the connection (``url, database, login,
password``), its ``kind`` (``aliasDomain``, ``mailServer``, ``incomingServer``), its
``key`` and the declared field values. ``create``/``read``/``update``/``delete`` bring
Odoo there over XML-RPC (``mailstack.odoo.client``) and return the state.

**Only what mailstack created is touched.** Every record mailstack creates gets an
external id ``mailstack.<key>`` (``ir.model.data``); read, update and delete find the
record by it. A record with the same name that mailstack did not create is a conflict,
refused with what to do — unless the stack says ``odoo.adopt: true``: then it is marked
and set, its previous values kept in the state, and on delete it is given back (values
restored, mark removed), never deleted. Company links (``res.company.alias_domain_id``)
and the fetchmail cron's interval are written only as declared and restored on delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.odoo.client import OdooClient, OdooRefused
from mailstack.odoo.desired import FETCHMAIL_CRON, MODULE

#: Per kind: the Odoo model and the property → field map of the declared values.
KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "aliasDomain": ("mail.alias.domain", {
        "name": "name", "bounceAlias": "bounce_alias", "catchallAlias": "catchall_alias", "defaultFrom": "default_from"}),
    "mailServer": ("ir.mail_server", {
        "name": "name", "smtpHost": "smtp_host", "smtpPort": "smtp_port", "smtpEncryption": "smtp_encryption",
        "smtpUser": "smtp_user", "smtpPass": "smtp_pass", "fromFilter": "from_filter", "sequence": "sequence"}),
    "incomingServer": ("fetchmail.server", {
        "name": "name", "server": "server", "port": "port", "isSsl": "is_ssl", "user": "user", "imapPassword": "password"}),
}
#: Properties that hold secrets (never in messages, secret in Pulumi's state).
SECRET_KEYS = ("password", "smtpPass", "imapPassword")
#: A change of these is another record in another Odoo: replace.
REPLACE_KEYS = ("url", "database", "kind", "key")
#: What the provider adds to the state (never declared, never a reason to update).
OUTPUT_KEYS = ("recordId", "adopted", "previous", "companiesBefore", "cronBefore")
#: Fields read back to compare (no secrets: Odoo returns them to admins, we do not keep them).
READ_BACK = {"smtpPass", "imapPassword"}


class Conflict(OdooRefused):
    """A record with that name exists in Odoo and mailstack did not create it."""


def client(props: Mapping[str, Any]) -> OdooClient:
    return OdooClient(str(props["url"]), str(props["database"]), str(props.get("login") or "admin"), str(props["password"]))


def record_id(props: Mapping[str, Any]) -> str:
    """The resource id: the external id mailstack gives the record."""
    return f"{MODULE}.{props['key']}"


def _values(props: Mapping[str, Any]) -> dict[str, Any]:
    _, fields = KINDS[str(props["kind"])]
    values = {field: props.get(prop) for prop, field in fields.items() if prop in props}
    return {k: (False if v is None else v) for k, v in values.items()}


def _mark(odoo: OdooClient, key: str) -> tuple[int, int] | None:
    """(mark id, record id) of ``mailstack.<key>``, None when there is none."""
    found = odoo.search_read("ir.model.data", [["module", "=", MODULE], ["name", "=", key]], ["res_id"])
    return (int(found[0]["id"]), int(found[0]["res_id"])) if found else None


def _owned(odoo: OdooClient, props: Mapping[str, Any]) -> int | None:
    """The id of the record mailstack marked for this key, None when gone."""
    model, _ = KINDS[str(props["kind"])]
    mark = _mark(odoo, str(props["key"]))
    if mark is None:
        return None
    if not odoo.call(model, "search", [["id", "=", mark[1]]]):
        odoo.call("ir.model.data", "unlink", [mark[0]])  # the record was deleted in Odoo: the mark goes too
        return None
    return mark[1]


def create(props: Mapping[str, Any]) -> dict[str, Any]:
    """Create (or adopt, when allowed) the record, mark it, link and confirm it."""
    odoo = client(props)
    kind, key = str(props["kind"]), str(props["key"])
    model, _ = KINDS[kind]
    state: dict[str, Any] = {"adopted": False, "previous": {}, "companiesBefore": {}, "cronBefore": None}
    existing = _owned(odoo, props)
    values = _values(props)
    if existing is None:
        same = odoo.call(model, "search", [["name", "=", props["name"]]])
        if same and not props.get("adopt"):
            raise Conflict(2, f"Odoo already has a {model} named {props['name']!r} (id {same[0]}) that mailstack did not create; "
                              "mailstack touches only the records it created. Delete or rename it in Odoo, or set "
                              "mailstack:odoo.adopt true to let mailstack take it over (its values are restored on delete).")
        if same:
            existing = int(same[0])
            previous = odoo.call(model, "read", [existing], [f for f in values if f not in ("smtp_pass", "password")])[0]
            state.update(adopted=True, previous={k: _plain(v) for k, v in previous.items() if k != "id"})
            odoo.call(model, "write", [existing], values)
        else:
            existing = int(odoo.call(model, "create", values))
        try:
            odoo.call("ir.model.data", "create", {"module": MODULE, "name": key, "model": model, "res_id": existing, "noupdate": True})
        except OdooRefused:
            if not state["adopted"]:
                odoo.call(model, "unlink", [existing])  # never leave an unmarked record behind
            raise
    else:
        odoo.call(model, "write", [existing], values)
    try:
        state["companiesBefore"] = _link_companies(odoo, props, existing, {}) if kind == "aliasDomain" else {}
        if kind == "incomingServer":
            state["cronBefore"] = _confirm(odoo, props, existing, None)
    except OdooRefused:
        delete({**props, **state, "recordId": existing})
        raise
    return {**props, **state, "recordId": existing}


def _plain(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str) else value


def _link_companies(odoo: OdooClient, props: Mapping[str, Any], domain_id: int, before: Mapping[str, Any]) -> dict[str, Any]:
    """Point the declared companies at the alias domain; restore the ones no longer
    declared; returns {company id: previous alias_domain_id} of those linked now."""
    wanted: dict[str, int] = {}
    for name in props.get("companies") or []:
        found = odoo.call("res.company", "search", [["name", "=", name]])
        if not found:
            known = [c["name"] for c in odoo.search_read("res.company", [], ["name"])]
            raise OdooRefused(2, f"Odoo has no company named {name!r} (mailstack:odoo.companies); its companies: {', '.join(map(str, known))}")
        wanted[str(found[0])] = int(found[0])
    result: dict[str, Any] = {}
    for company_id, previous in before.items():
        if company_id not in wanted:
            odoo.call("res.company", "write", [int(company_id)], {"alias_domain_id": previous or False})
    for company_id, numeric in wanted.items():
        if company_id in before:
            result[company_id] = before[company_id]
            continue
        current = odoo.call("res.company", "read", [numeric], ["alias_domain_id"])[0]["alias_domain_id"]
        result[company_id] = _plain(current) or False
        odoo.call("res.company", "write", [numeric], {"alias_domain_id": domain_id})
    return result


def _confirm(odoo: OdooClient, props: Mapping[str, Any], server_id: int, cron_before: int | None) -> int | None:
    """Test the login (``button_confirm_login``: Odoo connects to the mailbox), set the
    model and the cron's interval; returns the cron's interval before mailstack set it."""
    model = props.get("model")
    object_id: int | bool = False
    if model:
        found = odoo.call("ir.model", "search", [["model", "=", model]])
        if not found:
            raise OdooRefused(2, f"Odoo has no model {model!r} (mailstack:inbound.imap.model): is its app installed?")
        object_id = int(found[0])
    odoo.call("fetchmail.server", "write", [server_id], {"object_id": object_id})
    # The interval first: confirming activates the cron, whose next run Odoo schedules
    # from the interval it has then (ir.cron.nextcall).
    before = cron_before
    module, _, name = FETCHMAIL_CRON.partition(".")
    marks = odoo.search_read("ir.model.data", [["module", "=", module], ["name", "=", name]], ["res_id"])
    if marks:
        cron_id = int(marks[0]["res_id"])
        current = odoo.call("ir.cron", "read", [cron_id], ["interval_number", "interval_type"])[0]
        if before is None:
            before = int(current["interval_number"]) * {"hours": 60, "days": 1440}.get(str(current["interval_type"]), 1)
        odoo.call("ir.cron", "write", [cron_id], {"interval_number": int(props["interval"]), "interval_type": "minutes"})
    try:
        odoo.call("fetchmail.server", "button_confirm_login", [server_id])
    except OdooRefused:
        if marks and cron_before is None and before is not None:
            odoo.call("ir.cron", "write", [int(marks[0]["res_id"])], {"interval_number": before, "interval_type": "minutes"})
        raise
    return before


def read(props: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record as it is in Odoo (None when mailstack's record is gone)."""
    odoo = client(props)
    existing = _owned(odoo, props)
    if existing is None:
        return None
    model, fields = KINDS[str(props["kind"])]
    names = [f for p, f in fields.items() if p not in READ_BACK]
    live = odoo.call(model, "read", [existing], names)[0]
    state = dict(props)
    for prop, field in fields.items():
        if prop not in READ_BACK:
            value = _plain(live.get(field))
            state[prop] = None if value is False and prop not in ("isSsl",) else value
    if props.get("kind") == "aliasDomain":
        companies = odoo.search_read("res.company", [["alias_domain_id", "=", existing]], ["name"])
        declared = list(props.get("companies") or [])
        state["companies"] = [c for c in declared if c in {str(x["name"]) for x in companies}]
    state["recordId"] = existing
    return state


def update(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """Write the changed values on mailstack's record (recreated if it was deleted)."""
    odoo = client(news)
    existing = _owned(odoo, news)
    if existing is None:
        return create({**news, "adopt": False})
    model, _ = KINDS[str(news["kind"])]
    odoo.call(model, "write", [existing], _values(news))
    state = {k: olds.get(k) for k in ("adopted", "previous", "companiesBefore", "cronBefore")}
    if news["kind"] == "aliasDomain":
        state["companiesBefore"] = _link_companies(odoo, news, existing, dict(olds.get("companiesBefore") or {}))
    if news["kind"] == "incomingServer":
        state["cronBefore"] = _confirm(odoo, news, existing, olds.get("cronBefore"))
    return {**news, **state, "recordId": existing}


def delete(props: Mapping[str, Any]) -> None:
    """Remove mailstack's record (an adopted one is given back); restore company links
    and the cron's interval. Gone already is fine; Odoo's refusal is reported."""
    odoo = client(props)
    kind, key = str(props["kind"]), str(props["key"])
    model, _ = KINDS[kind]
    for company_id, previous in dict(props.get("companiesBefore") or {}).items():
        odoo.call("res.company", "write", [int(company_id)], {"alias_domain_id": previous or False})
    if kind == "incomingServer" and props.get("cronBefore") is not None:
        module, _, name = FETCHMAIL_CRON.partition(".")
        marks = odoo.search_read("ir.model.data", [["module", "=", module], ["name", "=", name]], ["res_id"])
        if marks:
            odoo.call("ir.cron", "write", [int(marks[0]["res_id"])], {"interval_number": int(props["cronBefore"]), "interval_type": "minutes"})
    mark = _mark(odoo, key)
    if mark is None:
        return
    if props.get("adopted"):
        odoo.call(model, "write", [mark[1]], {k: v for k, v in dict(props.get("previous") or {}).items()})
    elif odoo.call(model, "search", [["id", "=", mark[1]]]):
        try:
            odoo.call(model, "unlink", [mark[1]])
        except OdooRefused as err:
            raise OdooRefused(err.code, f"Odoo refuses to delete {model} {props.get('name')!r}: {err.message}"
                              + (" (aliases still use it: move them to another alias domain first)" if kind == "aliasDomain" else "")) from None
    if odoo.call("ir.model.data", "search", [["id", "=", mark[0]]]):  # Odoo's unlink removes the marks of what it deletes
        odoo.call("ir.model.data", "unlink", [mark[0]])
