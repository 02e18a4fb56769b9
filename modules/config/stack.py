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
from mailstack.config import kinds
from mailstack.config.checks import read_checks
from mailstack.config.dns import read_dns
from mailstack.config.inbound import read_inbound
from mailstack.config.reader import ConfigReader, Path, unknown_key
from mailstack.config.records import (
    read_dkim,
    read_dmarc,
    read_mta_sts,
    read_spf,
    read_tls_rpt,
)
from mailstack.config.senders import check_dkim_targets, read_outbound
from mailstack.config.stackfile import Secret
from mailstack.core.errors import ConfigErrors
from mailstack.core.model import Gateway, Hosting, MailDomain, Odoo, SshTarget
from mailstack.rules import limits

#: Keys that hold secrets: known, so not "unknown", but never part of the model. In a
#: stack file they must be Pulumi-encrypted (``secure:``); plain text is refused.
SECRET_KEYS = frozenset({"tsigSecret", "sshPrivateKey", "odooPassword", "smtpAuthPassword", "imapPassword"})
#: Keys other parts of mailstack read from the same namespace (the lab); validated
#: here for their shape, read by their owner.
EXTENSION_KEYS: set[str] = {"gateway", "lab", "checks"}
MODEL_KEYS = (
    "domain", "aliasDomains", "odoo", "outbound", "inbound", "gateways",
    "dkim", "spf", "dmarc", "mtaSts", "tlsRpt", "dns",
)
#: Every key of the namespace (a stack file's near-misses are compared with these).
KNOWN_KEYS = frozenset({*MODEL_KEYS, *SECRET_KEYS, *EXTENSION_KEYS})
#: Gateway hosts of one stack: each is an MX host of every domain.
GATEWAYS = limits.MX_HOSTS
#: Odoo's base URL (XML-RPC for the mailgate and the checks).
ODOO_URL = kinds.url(("http", "https"))


def from_config(raw: Mapping[str, Any], *, extension_keys: set[str] | None = None) -> MailDomain:
    """Validate the ``mailstack:`` config of one stack into a MailDomain.

    Raises ConfigErrors (every problem, each naming its key); nothing is half-built.
    """
    reader = ConfigReader()
    known = sorted(set(MODEL_KEYS) | SECRET_KEYS | EXTENSION_KEYS | (extension_keys or set()))
    for key in raw:
        if key not in known:
            reader.fail((str(key),), unknown_key(key, (), known).replace("(expected one of", "(known keys:"))
    _secrets(reader, raw)

    domain = _domain(reader, raw.get("domain"))
    aliases = _alias_domains(reader, raw.get("aliasDomains"), domain)
    odoo = _odoo(reader, raw.get("odoo"))
    gateways = _gateways(reader, raw.get("gateways"))
    outbound = read_outbound(reader, raw.get("outbound"), odoo, gateways)
    inbound = read_inbound(reader, raw.get("inbound"), odoo, gateways, domain)
    dkim = read_dkim(reader, raw.get("dkim"), _sending_names(domain, aliases, inbound))
    check_dkim_targets(reader, outbound, _sending_names(domain, aliases, inbound))
    spf_options = read_spf(reader, raw.get("spf"))
    dmarc_options = read_dmarc(reader, raw.get("dmarc"))
    mta = read_mta_sts(reader, raw.get("mtaSts"), inbound, bool(gateways))
    tls_rpt = read_tls_rpt(reader, raw.get("tlsRpt"))
    dns = read_dns(reader, raw.get("dns"), domain, aliases)
    gateway = gateway_settings.read(
        reader,
        raw.get("gateway"),
        odoo_url=odoo.rpc_url if odoo else None,
        odoo_database=odoo.database if odoo else None,
        has_gateways=bool(gateways) or bool(raw.get("gateways")),
        hosts=tuple(g.hostname for g in gateways or ()),
    )
    checks = read_checks(reader, raw.get("checks"))
    _lab(reader, raw.get("lab"))

    if reader.errors:
        raise ConfigErrors(reader.errors)
    assert domain and odoo and outbound is not None and inbound and dkim and spf_options
    assert dmarc_options and dns and gateways is not None and checks
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
        checks=checks,
    )
    odoo_settings.cross_check(reader, stack)
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return stack


def _secrets(reader: ConfigReader, raw: Mapping[str, Any]) -> None:
    """Secrets only encrypted; encrypted values only where a secret belongs."""
    for key, value in raw.items():
        if key in SECRET_KEYS and not isinstance(value, Secret):
            reader.fail((key,), (
                "is a secret given in plain text: remove it from the stack file and set it encrypted with "
                f"`pulumi config set --secret mailstack:{key}` (it prompts for the value); the CLI reads it from "
                f"${secret_env(key)} or ${secret_env(key)}_FILE"
            ))
        elif key not in SECRET_KEYS and isinstance(value, Secret):
            reader.fail((str(key),), "is encrypted (secure:), but it is not a secret: give it in plain text")


def secret_env(key: str) -> str:
    """The environment variable the CLI reads a secret from (``MAILSTACK_TSIG_SECRET``)."""
    return "MAILSTACK_" + "".join("_" + c if c.isupper() else c.upper() for c in key)


def _lab(reader: ConfigReader, value: Any) -> None:
    """``mailstack:lab`` is the lab's (``mailstack lab``, which reads its topology from
    the stack's own keys); a mapping, checked for shape only."""
    if value is not None and not isinstance(value, Mapping):
        reader.fail(("lab",), "must be a mapping")


def _sending_names(domain: str | None, aliases: tuple[str, ...], inbound: Any) -> tuple[str, ...]:
    """Every name a DKIM key name is built on (for the selector's length limit)."""
    bases = [d for d in (domain, *aliases) if d]
    subdomain = getattr(inbound, "subdomain", None)
    return tuple([*bases, *(f"{subdomain}.{d}" for d in bases if subdomain)])


def _domain(reader: ConfigReader, value: Any) -> str | None:
    if value is None:
        reader.fail(("domain",), "is required (the mail domain, e.g. example.com)")
        return None
    return reader.convert(value, ("domain",), kinds.domain)


def _alias_domains(reader: ConfigReader, value: Any, domain: str | None) -> tuple[str, ...]:
    items = reader.sequence(value, ("aliasDomains",), limits.ALIAS_DOMAINS, "alias domains") or []
    result: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = reader.convert(item, ("aliasDomains", index), kinds.domain)
        if name is None:
            continue
        if name == domain or name in seen:
            reader.fail(("aliasDomains", index), f"{name} is declared twice")
            continue
        seen.add(name)
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
    # On Odoo's servers the database is the label of <db>.odoo.com; on premise it is a
    # PostgreSQL name Odoo accepts (case kept: the mailgate logs into it).
    check = kinds.label if hosting in ("online", "sh") else kinds.database_name
    database = reader.string(data.get("database"), (*path, "database"), check)
    url = reader.string(data.get("url"), (*path, "url"), ODOO_URL)
    host = None
    if data.get("host") is not None:
        host = reader.convert(data["host"], (*path, "host"), kinds.hostname)
    local_parts = {}
    for part in ("bounce", "catchall", "notifications"):
        if data.get(part) is not None:
            local_parts[part] = reader.convert(data[part], (*path, part), kinds.local_part)
    login = reader.string(data.get("login"), (*path, "login"), kinds.login_name) or "admin"
    manage = odoo_settings.read_manage(reader, data.get("manage"), (*path, "manage"))
    companies = odoo_settings.read_companies(reader, data.get("companies"), (*path, "companies"))
    outgoing = odoo_settings.read_outgoing(reader, data.get("outgoingServer"), (*path, "outgoingServer"))
    adopt = reader.boolean(data.get("adopt"), (*path, "adopt"))
    if hosting is None:
        return None
    if hosting in ("online", "sh") and data.get("database") is None and data.get("host") is None:
        reader.fail((*path, "database"), f"is required for hosting {hosting} (the <db> of <db>.odoo.com)")
    if hosting == "onpremise" and data.get("url") is None:
        reader.fail((*path, "url"), "is required for hosting onpremise (Odoo's base URL for XML-RPC)")
    return Odoo(Hosting(hosting), database, url, host, **{k: v for k, v in local_parts.items() if v},
                login=login, manage=manage, companies=companies, outgoing_server=outgoing, adopt=adopt)


def _gateways(reader: ConfigReader, value: Any) -> tuple[Gateway, ...] | None:
    items = reader.sequence(value, ("gateways",), GATEWAYS, "gateways")
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
        hostname = reader.convert(data.get("hostname"), (*path, "hostname"), kinds.hostname) if data.get("hostname") is not None else None
        ipv4 = reader.convert(data.get("ipv4"), (*path, "ipv4"), kinds.ipv4) if data.get("ipv4") is not None else None
        ipv6 = reader.convert(data["ipv6"], (*path, "ipv6"), kinds.ipv6) if data.get("ipv6") is not None else None
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
    user = reader.string(data.get("user"), (*path, "user"), kinds.unix_user) or "root"
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=22)
    host = reader.string(data.get("host"), (*path, "host"), kinds.host_address)
    host_key = reader.convert(data["hostKey"], (*path, "hostKey"), kinds.ssh_host_key) if data.get("hostKey") is not None else None
    return SshTarget(user, port or 22, host, host_key)

