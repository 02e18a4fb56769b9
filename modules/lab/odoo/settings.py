"""Odoo 17's mail-settings models, with their field names, defaults and constraints.

Read from Odoo 17.0's source (/work/research/odoo17-spec.md §9–§10; copy [B]
``bragadossantos/odoo`` @ 3c0f43f2, a 17.0 snapshot — no ``odoo/odoo`` 17.0 commit could
be cited): ``mail.alias.domain`` (mail_alias_domain.py), ``mail.alias`` (mail_alias.py),
``res.company`` (mail's res_company.py), ``ir.config_parameter``, ``ir.model``,
``ir.model.data``, ``ir.mail_server`` (base ir_mail_server.py), ``mail.gateway.allowed``
and ``ir.cron``. Error texts are Odoo's. Where the spec marks a detail as not verified
(``res.company.alias_domain_id``'s ondelete, the main company's name) the stand-in
takes Odoo's framework default and says so at the field.
"""

from __future__ import annotations

import ast
from typing import Any

from mailstack.lab.odoo.model import Model
from mailstack.lab.odoo.orm import Env, Field, UserError, ValidationError
from mailstack.rules.odoo import DOT_ATOM, email_normalize, sanitize_alias_name


def _company(env: Env) -> dict[str, Any]:
    """The current user's company (the stand-in has one user: the first company)."""
    companies = env.rows("res.company")
    return companies[0] if companies else {"id": 0}


def _domain_row(env: Env, record: dict[str, Any], field: str = "alias_domain_id") -> dict[str, Any] | None:
    value = record.get(field)
    return env.row("mail.alias.domain", int(value)) if value else None


def _bounce_email(env: Env, domain: dict[str, Any]) -> str:
    return f"{domain.get('bounce_alias')}@{domain.get('name')}"


def _catchall_email(env: Env, domain: dict[str, Any]) -> str:
    return f"{domain.get('catchall_alias')}@{domain.get('name')}"


def _default_from_email(env: Env, domain: dict[str, Any]) -> str | bool:
    value = domain.get("default_from")
    if not value:
        return False
    return str(value) if "@" in str(value) else f"{value}@{domain.get('name')}"


class MailAliasDomain(Model):
    """``mail.alias.domain`` (17.0 new): name, bounce/catchall/default-from per domain."""

    _name = "mail.alias.domain"
    _description = "Email Domain"
    _order = "sequence ASC, id ASC"
    fields = {
        "name": Field("char", required=True, string="Name"),
        "company_ids": Field("one2many", comodel="res.company", inverse="alias_domain_id"),
        "sequence": Field("integer", default=10),
        "bounce_alias": Field("char", required=True, default="bounce", string="Bounce Alias"),
        "bounce_email": Field("char", compute=_bounce_email),
        "catchall_alias": Field("char", required=True, default="catchall", string="Catchall Alias"),
        "catchall_email": Field("char", compute=_catchall_email),
        "default_from": Field("char", default="notifications"),
        "default_from_email": Field("char", compute=_default_from_email),
    }

    def _prepare(self, values: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        # _sanitize_configuration: aliases sanitised, default_from as an address; the
        # name is NOT sanitised or lowercased in 17.0 (spec §10.2).
        for key in ("bounce_alias", "catchall_alias"):
            if key in values:
                values[key] = sanitize_alias_name(values[key])
        if values.get("default_from"):
            values["default_from"] = sanitize_alias_name(values["default_from"], is_email=True)
        return values

    def _constrain(self, record: dict[str, Any]) -> None:
        name = str(record.get("name") or "")
        if not DOT_ATOM.match(name):
            raise ValidationError(f"You cannot use anything else than unaccented latin characters in the domain name {name}.")
        others = [r for r in self.rows() if r["id"] != record["id"] and r.get("name") == name]
        if any(r.get("bounce_alias") == record.get("bounce_alias") for r in others):
            raise ValidationError("Bounce emails should be unique")
        if any(r.get("catchall_alias") == record.get("catchall_alias") for r in others):
            raise ValidationError("Catchall emails should be unique")
        aliases = self.env["mail.alias"]
        for kind, email in (("Bounce", _bounce_email(self.env, record)), ("Catchall", _catchall_email(self.env, record))):
            if any(aliases.value(alias, "alias_full_name") == email for alias in aliases.rows()):
                raise ValidationError(f"{kind} '{email}' is already used. Choose another alias or change it on the linked model.")

    def _after_create(self, ids: list[int]) -> None:
        # The first domain(s) created go to every company and alias still without one.
        if len(self.rows()) == len(ids):
            for company in self.env.rows("res.company"):
                if not company.get("alias_domain_id"):
                    self.env.update("res.company", company["id"], {"alias_domain_id": ids[0]})
            for alias in self.env.rows("mail.alias"):
                if not alias.get("alias_domain_id"):
                    self.env.update("mail.alias", alias["id"], {"alias_domain_id": ids[0]})


def _alias_full_name(env: Env, record: dict[str, Any]) -> str | bool:
    name = record.get("alias_name")
    domain = _domain_row(env, record)
    if name and domain:
        return f"{name}@{domain.get('name')}"
    return str(name) if name else False


def _alias_domain(env: Env, record: dict[str, Any]) -> str | bool:
    domain = _domain_row(env, record)
    return str(domain.get("name")) if domain else False


class MailAlias(Model):
    """``mail.alias``: an address (name @ alias domain) that routes mail to a model."""

    _name = "mail.alias"
    _description = "Email Aliases"
    _order = "alias_model_id, alias_name"
    _rec_name = "alias_name"
    fields = {
        "alias_name": Field("char", string="Alias Name"),
        "alias_full_name": Field("char", compute=_alias_full_name),
        "alias_domain_id": Field("many2one", comodel="mail.alias.domain", ondelete="restrict", string="Alias Domain"),
        "alias_domain": Field("char", compute=_alias_domain),
        "alias_model_id": Field("many2one", comodel="ir.model", required=True, ondelete="cascade", string="Aliased Model"),
        "alias_defaults": Field("text", required=True, default="{}", string="Default Values"),
        "alias_force_thread_id": Field("integer"),
        "alias_parent_model_id": Field("many2one", comodel="ir.model", ondelete="cascade"),
        "alias_parent_thread_id": Field("integer"),
        "alias_contact": Field("selection", required=True, default="everyone", selection=("everyone", "partners", "followers")),
        "alias_incoming_local": Field("boolean", default=False),
        "alias_bounced_content": Field("text"),
        "alias_status": Field("selection", default="not_tested", selection=("not_tested", "valid", "invalid")),
    }

    def display_name(self, record: dict[str, Any]) -> str:
        full = _alias_full_name(self.env, record)
        return str(full) if full else "Inactive Alias"

    def _prepare(self, values: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if "alias_name" in values:
            values["alias_name"] = sanitize_alias_name(values["alias_name"])
        if old is None and "alias_domain_id" not in values:
            values["alias_domain_id"] = _company(self.env).get("alias_domain_id") or False
        if old is not None and any(k in values for k in ("alias_contact", "alias_defaults", "alias_model_id")):
            values["alias_status"] = "not_tested"
        return values

    def _constrain(self, record: dict[str, Any]) -> None:
        name = record.get("alias_name")
        if name and not DOT_ATOM.match(str(name)):
            raise ValidationError(f"You cannot use anything else than unaccented latin characters in the alias address {name}.")
        try:
            if not isinstance(ast.literal_eval(str(record.get("alias_defaults") or "{}")), dict):
                raise ValueError
        except (ValueError, SyntaxError):
            raise ValidationError('Invalid expression, it must be a literal python dictionary definition e.g. "{\'field\': \'value\'}"') from None
        if not name:
            return
        for other in self.rows():
            if other["id"] != record["id"] and other.get("alias_name") == name and \
                    (other.get("alias_domain_id") or 0) == (record.get("alias_domain_id") or 0):
                model = self.env["ir.model"].row(int(other["alias_model_id"])) or {}
                raise UserError(f"Alias {self.display_name(record)} ({record['id']}) is already linked with "
                                f"{model.get('name', '')} ({other['id']}).\nChoose another value or change it on the other document.")
        domain = _domain_row(self.env, record)
        if domain and name in (domain.get("bounce_alias"), domain.get("catchall_alias")):
            raise ValidationError(f"Aliases {self.display_name(record)} is already used as bounce or catchall address. "
                                  "Please choose another alias.")


def _company_domain_value(key: str) -> Any:
    def compute(env: Env, record: dict[str, Any]) -> Any:
        domain = _domain_row(env, record)
        if domain is None:
            return False
        if key == "bounce_email":
            return _bounce_email(env, domain)
        if key == "catchall_email":
            return _catchall_email(env, domain)
        if key == "default_from_email":
            return _default_from_email(env, domain)
        return domain.get("name")
    return compute


class ResCompany(Model):
    """``res.company`` with mail's fields: the alias domain a company sends and
    receives on. ``alias_domain_id``'s ondelete is not in the spec: the framework
    default (set null) is used."""

    _name = "res.company"
    _description = "Companies"
    fields = {
        "name": Field("char", required=True, string="Company Name"),
        "email": Field("char"),
        "alias_domain_id": Field("many2one", comodel="mail.alias.domain", string="Email Domain",
                                 default=lambda env: (env.rows("mail.alias.domain") or [{"id": False}])[0]["id"]),
        "alias_domain_name": Field("char", compute=_company_domain_value("alias_domain_name")),
        "bounce_email": Field("char", compute=_company_domain_value("bounce_email")),
        "catchall_email": Field("char", compute=_company_domain_value("catchall_email")),
        "default_from_email": Field("char", compute=_company_domain_value("default_from_email")),
    }


class ResPartner(Model):
    """``res.partner``: who Odoo knows (the ``partners`` contact policy asks)."""

    _name = "res.partner"
    _description = "Contact"
    fields = {
        "name": Field("char"),
        "email": Field("char"),
        "email_normalized": Field("char", compute=lambda env, r: email_normalize(r.get("email")) or False),
        "company_id": Field("many2one", comodel="res.company"),
    }


class IrConfigParameter(Model):
    """``ir.config_parameter`` (system parameters) with ``get_param``/``set_param``."""

    _name = "ir.config_parameter"
    _description = "System Parameter"
    _rec_name = "key"
    fields = {"key": Field("char", required=True, string="Key"), "value": Field("text", required=True, string="Value")}
    rpc_methods = ("get_param", "set_param")

    def _constrain(self, record: dict[str, Any]) -> None:
        if any(r["id"] != record["id"] and r.get("key") == record.get("key") for r in self.rows()):
            raise ValidationError("Key must be unique.")

    def _prepare(self, values: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        key = values.get("key", (old or {}).get("key"))
        if key == "mail.catchall.domain.allowed" and "value" in values:
            # _sanitize_allowed_domains: lowercase, comma-joined, empty refused.
            cleaned = ",".join(d.strip().lower() for d in str(values["value"]).split(",") if d.strip())
            if not cleaned:
                raise ValidationError("Value for `mail.catchall.domain.allowed` cannot be validated.\nIt should be a comma separated list of domains e.g. example.com,example.org.")
            values["value"] = cleaned
        return values

    def get_param(self, key: str, default: Any = False) -> Any:
        found = [r for r in self.rows() if r.get("key") == key]
        return found[0].get("value") if found else default

    def set_param(self, key: str, value: Any) -> Any:
        found = [r for r in self.rows() if r.get("key") == key]
        old = found[0].get("value") if found else False
        if value is False or value is None:
            if found:
                self.unlink([found[0]["id"]])
        elif found:
            self.write([found[0]["id"]], {"value": str(value)})
        else:
            self.create({"key": key, "value": str(value)})
        return old


class IrModel(Model):
    """``ir.model``: the models aliases and incoming servers can target."""

    _name = "ir.model"
    _description = "Models"
    fields = {"model": Field("char", required=True), "name": Field("char", required=True)}


class IrModelData(Model):
    """``ir.model.data``: external ids — how mailstack marks the records it created."""

    _name = "ir.model.data"
    _description = "Model Data"
    fields = {
        "name": Field("char", required=True, string="External Identifier"),
        "module": Field("char", required=True, default=""),
        "model": Field("char", required=True, string="Model Name"),
        "res_id": Field("integer"),
        "noupdate": Field("boolean", default=False),
    }

    def _constrain(self, record: dict[str, Any]) -> None:
        if "." in str(record.get("name")):
            raise ValidationError("External IDs cannot contain periods")
        if any(r["id"] != record["id"] and (r.get("module"), r.get("name")) == (record.get("module"), record.get("name")) for r in self.rows()):
            raise ValidationError("You cannot have multiple records with the same external ID in the same module!")

    def xmlid(self, xmlid: str) -> tuple[str, int] | None:
        """``env.ref``: (model, res_id) of ``module.name``."""
        module, _, name = xmlid.partition(".")
        for record in self.rows():
            if record.get("module") == module and record.get("name") == name:
                return str(record["model"]), int(record["res_id"])
        return None


class IrMailServer(Model):
    """``ir.mail_server`` (outgoing servers): from_filter decides who sends what."""

    _name = "ir.mail_server"
    _description = "Mail Server"
    _order = "sequence, id"
    fields = {
        "name": Field("char", required=True, string="Name"),
        "from_filter": Field("char"),
        "smtp_host": Field("char"),
        "smtp_port": Field("integer", default=25),
        "smtp_authentication": Field("selection", required=True, default="login", selection=("login", "certificate", "cli")),
        "smtp_user": Field("char"),
        "smtp_pass": Field("char"),
        "smtp_encryption": Field("selection", required=True, default="none", selection=("none", "starttls", "ssl")),
        "smtp_debug": Field("boolean", default=False),
        "sequence": Field("integer", default=10),
        "active": Field("boolean", default=True),
    }


class MailGatewayAllowed(Model):
    """``mail.gateway.allowed``: senders the loop detection never limits."""

    _name = "mail.gateway.allowed"
    _description = "Mail Gateway Allowed"
    _rec_name = "email"
    fields = {
        "email": Field("char", required=True),
        "email_normalized": Field("char", compute=lambda env, r: email_normalize(r.get("email")) or False),
    }


class IrCron(Model):
    """``ir.cron``: the stand-in runs "Mail: Fetchmail Service" on its interval."""

    _name = "ir.cron"
    _description = "Scheduled Actions"
    fields = {
        "name": Field("char", required=True),
        "model_id": Field("many2one", comodel="ir.model"),
        "code": Field("text"),
        "interval_number": Field("integer", default=1),
        "interval_type": Field("selection", default="months", selection=("minutes", "hours", "days", "weeks", "months")),
        "active": Field("boolean", default=True),
        "nextcall": Field("datetime"),
        "lastcall": Field("datetime"),
    }
    rpc_methods = ("toggle",)

    def toggle(self, model: str, domain: list[Any]) -> bool:
        """``ir.cron.toggle``: active exactly when ``model`` has records matching ``domain``."""
        active = self.env[model].search_count(domain) > 0
        for cron in self.rows():
            if (self.env["ir.model"].row(int(cron.get("model_id") or 0)) or {}).get("model") == model:
                self.env.update(self._name, cron["id"], {"active": active})
        return True
