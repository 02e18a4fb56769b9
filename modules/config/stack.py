"""Stack configuration → MailDomain: every key validated, coerced, and named on error.

The input is the ``mailstack:`` namespace of a stack as a plain mapping (short keys,
parsed values), whether it comes from a stack file (``mailstack.config.stackfile``) or
from the Pulumi engine (``mailstack.providers.engine_config``). Errors are collected
across the whole declaration and raised once as ConfigErrors, each naming its key.
Whether the records of a valid declaration fit together is the plan's question
(``mailstack.plan.build``), asked next by every caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.config import gateway as gateway_settings
from mailstack.config import odoo as odoo_settings
from mailstack.config.dns import read_dns
from mailstack.config.inbound import read_inbound
from mailstack.config.kinds import database_name, local_part, ssh_host_key
from mailstack.config.reader import ConfigReader, Path
from mailstack.config.records import (
    read_dkim,
    read_dmarc,
    read_mta_sts,
    read_spf,
    read_tls_rpt,
)
from mailstack.config.senders import read_outbound
from mailstack.core import names
from mailstack.core.errors import ConfigErrors
from mailstack.core.model import Gateway, Hosting, MailDomain, Odoo, SshTarget

#: Keys that hold secrets: known, so not "unknown", but never part of the model.
SECRET_KEYS = frozenset({"tsigSecret", "sshPrivateKey", "odooPassword", "smtpAuthPassword", "imapPassword"})
#: Keys other parts of mailstack read from the same namespace (gateway rendering, lab,
#: the check suite's `checks: {disable: [...]}`).
EXTENSION_KEYS: set[str] = {"gateway", "lab", "checks"}
MODEL_KEYS = (
    "domain", "aliasDomains", "odoo", "outbound", "inbound", "gateways",
    "dkim", "spf", "dmarc", "mtaSts", "tlsRpt", "dns",
)


def from_config(raw: Mapping[str, Any], *, extension_keys: set[str] | None = None) -> MailDomain:
    """Validate the ``mailstack:`` config of one stack into a MailDomain.

    Raises ConfigErrors (every problem, each naming its key); nothing is half-built.
    """
    reader = ConfigReader()
    known = set(MODEL_KEYS) | SECRET_KEYS | EXTENSION_KEYS | (extension_keys or set())
    for key in raw:
        if key not in known:
            reader.fail((key,), f"unknown key (known keys: {', '.join(sorted(known))})")

    domain = _domain(reader, raw.get("domain"))
    aliases = _alias_domains(reader, raw.get("aliasDomains"), domain)
    odoo = _odoo(reader, raw.get("odoo"))
    gateways = _gateways(reader, raw.get("gateways"))
    outbound = read_outbound(reader, raw.get("outbound"), odoo, gateways)
    inbound = read_inbound(reader, raw.get("inbound"), odoo, gateways, domain)
    dkim = read_dkim(reader, raw.get("dkim"))
    spf_options = read_spf(reader, raw.get("spf"))
    dmarc_options = read_dmarc(reader, raw.get("dmarc"))
    mta = read_mta_sts(reader, raw.get("mtaSts"), inbound)
    tls_rpt = read_tls_rpt(reader, raw.get("tlsRpt"))
    dns = read_dns(reader, raw.get("dns"), domain, aliases)
    gateway = gateway_settings.read(
        reader,
        raw.get("gateway"),
        odoo_url=odoo.rpc_url if odoo else None,
        odoo_database=odoo.database if odoo else None,
        has_gateways=bool(gateways) or bool(raw.get("gateways")),
    )

    if reader.errors:
        raise ConfigErrors(reader.errors)
    assert domain and odoo and outbound is not None and inbound and dkim and spf_options
    assert dmarc_options and dns and gateways is not None
    stack = MailDomain(
        domain=domain,
        alias_domains=aliases,
        odoo=odoo,
        outbound=outbound,
        inbound=inbound,
        gateways=gateways,
        dkim=dkim,
        spf=spf_options,
        dmarc=dmarc_options,
        mta_sts=mta,
        tls_rpt=tls_rpt,
        dns=dns,
        gateway=gateway,
    )
    odoo_settings.cross_check(reader, stack)
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return stack


def _domain(reader: ConfigReader, value: Any) -> str | None:
    if value is None:
        reader.fail(("domain",), "is required (the mail domain, e.g. example.com)")
        return None
    return reader.convert(value, ("domain",), names.domain)


def _alias_domains(reader: ConfigReader, value: Any, domain: str | None) -> tuple[str, ...]:
    items = reader.sequence(value, ("aliasDomains",)) or []
    result: list[str] = []
    for index, item in enumerate(items):
        name = reader.convert(item, ("aliasDomains", index), names.domain)
        if name is None:
            continue
        if name == domain or name in result:
            reader.fail(("aliasDomains", index), f"{name} is declared twice")
            continue
        result.append(name)
    return tuple(result)


def _odoo(reader: ConfigReader, value: Any) -> Odoo | None:
    path: Path = ("odoo",)
    fields = ("hosting", "database", "url", "host", "bounce", "catchall", "notifications",
              "login", "manage", "companies", "outgoingServer", "adopt")
    data = reader.mapping(value, path, fields)
    if data is None:
        return None
    if value is None:
        reader.fail(path, "is required: {hosting: online|sh|onpremise, database: ...}")
        return None
    hosting = reader.choice(data.get("hosting"), (*path, "hosting"), tuple(h.value for h in Hosting))
    if data.get("hosting") is None:
        reader.fail((*path, "hosting"), "is required (online, sh or onpremise)")
    database = reader.string(data.get("database"), (*path, "database"))
    if database is not None:
        # On Odoo's servers the database is the label of <db>.odoo.com; on premise it
        # is a PostgreSQL name Odoo accepts (case kept: the mailgate logs into it).
        check = names.label if hosting in ("online", "sh") else database_name
        database = reader.convert(database, (*path, "database"), check)
    url = reader.string(data.get("url"), (*path, "url"))
    if url is not None and not url.startswith(("http://", "https://")):
        reader.fail((*path, "url"), f"{url!r} is not an http:// or https:// URL")
    host = None
    if data.get("host") is not None:
        host = reader.convert(data["host"], (*path, "host"), names.hostname)
    local_parts = {}
    for part in ("bounce", "catchall", "notifications"):
        if data.get(part) is not None:
            local_parts[part] = reader.convert(data[part], (*path, part), local_part)
    login = "admin"
    if data.get("login") is not None:
        login = reader.convert(data["login"], (*path, "login"), odoo_settings.login) or "admin"
    manage = odoo_settings.read_manage(reader, data.get("manage"), (*path, "manage"))
    companies = odoo_settings.read_companies(reader, data.get("companies"), (*path, "companies"))
    outgoing = odoo_settings.read_outgoing(reader, data.get("outgoingServer"), (*path, "outgoingServer"))
    adopt = reader.boolean(data.get("adopt"), (*path, "adopt"))
    if hosting is None:
        return None
    if hosting in ("online", "sh") and data.get("database") is None and data.get("host") is None:
        reader.fail((*path, "database"), f"is required for hosting {hosting} (the <db> of <db>.odoo.com)")
    if hosting == "onpremise" and url is None:
        reader.fail((*path, "url"), "is required for hosting onpremise (Odoo's base URL for XML-RPC)")
    return Odoo(Hosting(hosting), database, url, host, **{k: v for k, v in local_parts.items() if v},
                login=login, manage=manage, companies=companies, outgoing_server=outgoing, adopt=adopt)


def _gateways(reader: ConfigReader, value: Any) -> tuple[Gateway, ...] | None:
    items = reader.sequence(value, ("gateways",))
    if items is None:
        return None
    gateways: list[Gateway] = []
    for index, item in enumerate(items):
        path: Path = ("gateways", index)
        data = reader.mapping(item, path, ("hostname", "ipv4", "ipv6", "priority", "ssh"))
        if data is None:
            continue
        if data.get("hostname") is None:
            reader.fail((*path, "hostname"), "is required")
        if data.get("ipv4") is None:
            reader.fail((*path, "ipv4"), "is required: a gateway needs an address for SPF and its MX")
        hostname = reader.convert(data.get("hostname"), (*path, "hostname"), names.hostname) if data.get("hostname") is not None else None
        ipv4 = reader.convert(data.get("ipv4"), (*path, "ipv4"), names.ipv4) if data.get("ipv4") is not None else None
        ipv6 = reader.convert(data["ipv6"], (*path, "ipv6"), names.ipv6) if data.get("ipv6") is not None else None
        priority = reader.integer(data.get("priority"), (*path, "priority"), 0, 65535, default=10 * (index + 1))
        ssh = _ssh(reader, data.get("ssh"), (*path, "ssh"))
        if hostname in {g.hostname for g in gateways}:
            reader.fail((*path, "hostname"), f"{hostname} is declared twice")
        if hostname and ipv4 and priority is not None and ssh is not None:
            gateways.append(Gateway(hostname, ipv4, ipv6, priority, ssh))
    return tuple(gateways)


def _ssh(reader: ConfigReader, value: Any, path: Path) -> SshTarget | None:
    data = reader.mapping(value, path, ("user", "port", "host", "hostKey"))
    if data is None:
        return None
    user = reader.string(data.get("user"), (*path, "user")) or "root"
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=22)
    host = reader.string(data.get("host"), (*path, "host"))
    host_key = reader.convert(data["hostKey"], (*path, "hostKey"), ssh_host_key) if data.get("hostKey") is not None else None
    return SshTarget(user, port or 22, host, host_key)
