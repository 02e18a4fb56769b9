"""Odoo's mail settings as Pulumi resources: a dynamic provider over Odoo's XML-RPC.

``OdooSettings`` (``mailstack:odoo:Settings``) owns one resource per record the stack
manages inside Odoo (``mailstack:odoo.manage``, ``mailstack.odoo.desired``):
``OdooAliasDomain`` per mail domain (``mail.alias.domain`` and the companies using it),
``OdooMailServer`` (``ir.mail_server`` with ``from_filter``) and ``OdooIncomingServer``
(``fetchmail.server``, confirmed by Odoo's own login test, and the fetchmail cron's
interval). ``OdooSettingProvider`` is their provider: ``check`` validates the inputs,
``diff`` says what changes (another Odoo or key: replace), and create/read/update/
delete are ``mailstack.odoo.records`` — which touches only what mailstack marked as
its own (external id ``mailstack.<key>``).

The credentials are Pulumi secrets (``mailstack:odooPassword``; ``smtpAuthPassword``
for the outgoing server, ``imapPassword`` for the incoming one): inputs marked secret,
kept encrypted in the state, never in a message. Like the RFC 2136 provider this
module has no import side effects and the provider keeps no client: Pulumi pickles it
into the state and runs it in another process, where each method builds its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from mailstack.core import names
from mailstack.core.model import SMTP_SECURITY
from mailstack.odoo import records
from mailstack.odoo.apply import alias_domain_props, incoming_server_props, mail_server_props
from mailstack.odoo.client import OdooError
from mailstack.odoo.desired import Desired
from mailstack.providers.rfc2136 import is_unknown
from mailstack.rules.odoo import DOT_ATOM

TYPE = "mailstack:odoo:Settings"
_KEY = re.compile(r"^[a-z0-9_]{1,100}$")
_INTEGERS = {"smtpPort": (1, 65535), "port": (1, 65535), "sequence": (0, 10000), "interval": (1, 1440)}


def _plain(value: Any) -> Any:
    from pulumi.runtime import rpc

    return rpc.unwrap_rpc_secret(value)


def _plain_props(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in props.items() if key != "__provider"}


class OdooSettingProvider(dynamic.ResourceProvider):
    """CRUD of one mail-settings record in Odoo over XML-RPC."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        """Validate inputs before anything reaches Odoo (messages never hold a secret)."""
        inputs = dict(news)
        failures: list[dynamic.CheckFailure] = []

        def fail(key: str, reason: str) -> None:
            failures.append(dynamic.CheckFailure(key, reason))

        known = {k: _plain(v) for k, v in inputs.items() if not is_unknown(v)}
        kind = known.get("kind")
        if kind not in records.KINDS:
            fail("kind", f"{kind!r} is not one of {', '.join(records.KINDS)}")
            return dynamic.CheckResult(inputs, failures)
        for key in ("url", "database", "password", "key", "name"):
            if inputs.get(key) is None:
                fail(key, "is required")
        url = known.get("url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            fail("url", f"{str(url)[:80]!r} is not an http:// or https:// URL")
        if "key" in known and not _KEY.match(str(known["key"])):
            fail("key", f"{str(known['key'])[:80]!r} is not an external-id name (a-z, 0-9, _)")
        for key, (low, high) in _INTEGERS.items():
            if key in known and known[key] is not None:
                try:
                    number = int(known[key])
                    if number != float(known[key]) or not low <= number <= high:
                        raise ValueError
                    inputs[key] = number
                except (TypeError, ValueError):
                    fail(key, f"{str(known[key])[:40]!r} is not an integer between {low} and {high}")
        if kind == "aliasDomain" and "name" in known and not DOT_ATOM.match(str(known["name"])):
            fail("name", f"{str(known['name'])[:80]!r} is not a domain name Odoo accepts (unaccented latin characters)")
        for key in ("smtpHost", "server"):
            if known.get(key) is not None:
                try:
                    inputs[key] = names.hostname(str(known[key])) if not names.is_ip(str(known[key])) else str(known[key])
                except ValueError as err:
                    fail(key, str(err))
        if "smtpEncryption" in known and known["smtpEncryption"] not in SMTP_SECURITY:
            fail("smtpEncryption", f"{known['smtpEncryption']!r} is not one of {', '.join(SMTP_SECURITY)}")
        return dynamic.CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Replace for another Odoo, database, kind or key; update on any declared value."""
        replaces = [k for k in records.REPLACE_KEYS if is_unknown(news.get(k)) or _plain(olds.get(k)) != _plain(news.get(k))]
        declared = [k for k in news if k != "__provider" and k not in records.REPLACE_KEYS and k not in records.OUTPUT_KEYS]
        changed = [k for k in declared if is_unknown(news.get(k)) or _plain(olds.get(k)) != _plain(news.get(k))]
        return dynamic.DiffResult(changes=bool(replaces or changed), replaces=replaces, stables=[], delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        plain = _plain_props(props)
        return dynamic.CreateResult(records.record_id(plain), _outputs(_run(records.create, plain)))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        live = _run(records.read, _plain_props(props))
        if live is None:
            return dynamic.ReadResult("", props)
        return dynamic.ReadResult(id_, _outputs(live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(_outputs(_run(records.update, _plain_props(olds), _plain_props(news))))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _run(records.delete, _plain_props(props))


def _run(operation: Any, *args: Any) -> Any:
    """Odoo's refusal as an error the engine shows (the message holds no secret)."""
    try:
        return operation(*args)
    except OdooError as err:
        raise OdooError(f"Odoo ({args[-1].get('kind')} {args[-1].get('name')!r}): {err}") from None


def _outputs(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "__provider"}


_SECRET_OUTPUTS = list(records.SECRET_KEYS)


class _OdooRecord(dynamic.Resource):
    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None) -> None:
        props = {**props, **{key: None for key in records.OUTPUT_KEYS}}
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=_SECRET_OUTPUTS)
        super().__init__(OdooSettingProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret_opts))


class OdooAliasDomain(_OdooRecord, module="mailstack", name="OdooAliasDomain"):
    """One ``mail.alias.domain`` and the companies that use it."""


class OdooMailServer(_OdooRecord, module="mailstack", name="OdooMailServer"):
    """Odoo's outgoing ``ir.mail_server``."""


class OdooIncomingServer(_OdooRecord, module="mailstack", name="OdooIncomingServer"):
    """Odoo's ``fetchmail.server`` (IMAP) and its cron interval."""


@dataclass
class OdooSettingsArgs:
    """The records to keep and how to reach Odoo; passwords stay Pulumi secrets."""

    desired: Desired
    url: str
    database: str
    login: str
    password: pulumi.Input[str]
    adopt: bool = False
    smtp_password: pulumi.Input[str] | None = None
    imap_password: pulumi.Input[str] | None = None
    #: What must exist before Odoo is told to use it: the DNS records, the gateways.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class OdooSettings(pulumi.ComponentResource):
    """The stack's mail settings inside Odoo, created after what they depend on."""

    def __init__(self, name: str, args: OdooSettingsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        common = {"url": args.url, "database": args.database, "login": args.login,
                  "password": pulumi.Output.secret(args.password), "adopt": args.adopt}
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.alias_domains = [
            OdooAliasDomain(f"{name}-{spec.key.replace('_', '-')}", {**common, **alias_domain_props(spec)}, child)
            for spec in args.desired.alias_domains
        ]
        after_domains = pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *self.alias_domains])
        self.mail_server = None
        if args.desired.mail_server is not None:
            props = {**common, **mail_server_props(args.desired.mail_server)}
            if args.smtp_password is not None:
                props["smtpPass"] = pulumi.Output.secret(args.smtp_password)
            self.mail_server = OdooMailServer(f"{name}-outgoing-server", props, after_domains)
        self.incoming_server = None
        if args.desired.incoming_server is not None:
            if args.imap_password is None:
                raise pulumi.RunError("mailstack:imapPassword: is required when odoo.manage lists incomingServer "
                                      "(pulumi config set --secret mailstack:imapPassword ...)")
            props = {**common, **incoming_server_props(args.desired.incoming_server), "imapPassword": pulumi.Output.secret(args.imap_password)}
            self.incoming_server = OdooIncomingServer(f"{name}-incoming-server", props, after_domains)
        self.register_outputs({"aliasDomains": [d.urn for d in self.alias_domains]})
