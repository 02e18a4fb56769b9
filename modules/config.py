"""Stack configuration → MailDomain: every key validated, coerced, and named on error.

The input is the ``mailstack:`` namespace of a stack as a plain mapping (short keys,
parsed values), whether it comes from a stack file (``modules.stackfile``) or from the
Pulumi engine (``modules.pulumi_config``). Errors are collected across the whole
declaration and raised once as ConfigErrors, each naming its key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modules import dmarc, gateway_settings, mta_sts, names, plan as plan_module, spf
from modules.config_dns import read_dns
from modules.config_reader import ConfigReader, Path
from modules.errors import ConfigError, ConfigErrors, PlanError
from modules.model import (
    Dkim,
    Dmarc,
    Gateway,
    Hosting,
    Inbound,
    InboundMode,
    MailDomain,
    MtaSts,
    MxHost,
    Odoo,
    Sender,
    SenderKind,
    Spf,
    SshTarget,
    TlsRpt,
)
from modules.senders import GOOGLE_MX, microsoft_mx


#: Keys that hold secrets: known, so not "unknown", but never part of the model.
SECRET_KEYS = frozenset({"tsigSecret", "sshPrivateKey", "odooPassword", "smtpAuthPassword"})
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
    The record plan is computed once here too, so a declaration whose records break a
    rule together (SPF over budget, a CNAME beside another record) is refused up front.
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
    outbound = _outbound(reader, raw.get("outbound"), odoo, gateways)
    inbound = _inbound(reader, raw.get("inbound"), odoo, gateways, domain)
    dkim = _dkim(reader, raw.get("dkim"))
    spf_options = _spf(reader, raw.get("spf"))
    dmarc_options = _dmarc(reader, raw.get("dmarc"))
    mta = _mta_sts(reader, raw.get("mtaSts"), inbound)
    tls_rpt = _tls_rpt(reader, raw.get("tlsRpt"))
    dns = read_dns(reader, raw.get("dns"), domain, aliases)
    gateway = gateway_settings.read(
        reader,
        raw.get("gateway"),
        odoo_url=odoo.url if odoo else None,
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
    try:
        plan_module.plan(stack)
    except PlanError as err:
        raise ConfigErrors(_plan_errors(stack, err.problems)) from err
    return stack


_SPF_AT_NAME = re.compile(r"^(?P<name>[^\s:]+): (?P<body>SPF .*)$")


def _plan_errors(stack: MailDomain, problems: tuple[str, ...]) -> list[ConfigError]:
    """One ConfigError per broken rule, at the key a user changes to fix it. The same
    SPF problem at several names (the record is shared) is reported once."""
    errors: list[ConfigError] = []
    spf_names: dict[str, list[str]] = {}
    for problem in problems:
        match = _SPF_AT_NAME.match(problem)
        if match:
            spf_names.setdefault(match["body"], []).append(match["name"])
            continue
        errors.append(ConfigError(_plan_error_path(stack, problem), problem))
    for body, at in spf_names.items():
        errors.append(ConfigError(("outbound",), f"{', '.join(at)}: {body}"))
    return errors


def _plan_error_path(stack: MailDomain, message: str) -> Path:
    gateway_selector = f"{stack.dkim.selector}._domainkey."
    if gateway_selector in message and stack.sends_via(SenderKind.GATEWAY):
        return ("dkim", "selector")
    if "._domainkey." in message or "SPF" in message:
        return ("outbound",)
    if "_dmarc." in message:
        return ("dmarc",)
    if "CNAME" in message or "MX" in message:
        return ("inbound",)
    return ("domain",)


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
    fields = ("hosting", "database", "url", "host", "bounce", "catchall", "notifications")
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
        check = names.label if hosting in ("online", "sh") else _database_name
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
            local_parts[part] = reader.convert(data[part], (*path, part), _local_part)
    if hosting is None:
        return None
    if hosting in ("online", "sh") and data.get("database") is None and data.get("host") is None:
        reader.fail((*path, "database"), f"is required for hosting {hosting} (the <db> of <db>.odoo.com)")
    if hosting == "onpremise" and url is None:
        reader.fail((*path, "url"), "is required for hosting onpremise (Odoo's base URL for XML-RPC)")
    return Odoo(Hosting(hosting), database, url, host, **{k: v for k, v in local_parts.items() if v})


#: Odoo's own rule for database names (odoo.service.db.DBNAME_PATTERN).
_DBNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def _database_name(value: Any) -> str:
    if not isinstance(value, str) or not _DBNAME.match(value):
        raise ValueError(f"{value!r} is not an Odoo database name (letters, digits, '_', '.', '-')")
    return value


def _local_part(value: Any) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "._+-" for c in value):
        raise ValueError(f"{value!r} is not an e-mail local part")
    return value.lower()


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
    data = reader.mapping(value, path, ("user", "port", "host"))
    if data is None:
        return None
    user = reader.string(data.get("user"), (*path, "user")) or "root"
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=22)
    host = reader.string(data.get("host"), (*path, "host"))
    return SshTarget(user, port or 22, host)


_SENDER_FIELDS: dict[str, tuple[str, ...]] = {
    "odoo": ("type",),
    "gateway": ("type",),
    "mailjet": ("type", "dkimKey", "dkimSelector"),
    "google": ("type", "dkimKey", "dkimSelector"),
    "microsoft": ("type", "tenant"),
}


def _outbound(reader: ConfigReader, value: Any, odoo: Odoo | None, gateways: tuple[Gateway, ...] | None) -> tuple[Sender, ...] | None:
    items = reader.sequence(value, ("outbound",))
    if items is None:
        return None
    result: list[Sender] = []
    for index, item in enumerate(items):
        path: Path = ("outbound", index)
        sender = _sender(reader, item, path)
        if sender is None:
            continue
        if sender.kind is not SenderKind.SPF and any(s.kind is sender.kind for s in result):
            reader.fail(path, f"sender {sender.kind.value} is declared twice")
            continue
        if sender.kind is SenderKind.ODOO and odoo and not odoo.saas:
            reader.fail(path, "sender odoo (Odoo's mail servers) needs odoo.hosting online or sh; on premise send through a gateway or a provider")
        if sender.kind is SenderKind.GATEWAY and not gateways:
            reader.fail(path, "sender gateway needs at least one entry in mailstack:gateways")
        result.append(sender)
    return tuple(result)


def _sender(reader: ConfigReader, item: Any, path: Path) -> Sender | None:
    if isinstance(item, str):
        item = {"type": item}
    if not isinstance(item, Mapping):
        reader.fail(path, "must be a sender name (odoo, gateway, mailjet, google, microsoft) or a mapping")
        return None
    if "spf" in item and "type" not in item:
        data = reader.mapping(item, path, ("spf",))
        if data is None:
            return None
        terms_text = reader.string(data.get("spf"), (*path, "spf"))
        if terms_text is None:
            return None
        terms = tuple(terms_text.split())
        for term in terms:
            try:
                parsed = spf.parse_term(term)
            except spf.SpfSyntaxError as err:
                reader.fail((*path, "spf"), str(err))
                return None
            if parsed.name == "all":
                reader.fail((*path, "spf"), f"{term!r}: the all term is set once, by mailstack:spf.all")
                return None
            if parsed.name == "redirect":
                reader.fail((*path, "spf"), f"{term!r}: redirect cannot be merged with other senders")
                return None
            if parsed.modifier and parsed.name == "v":
                reader.fail((*path, "spf"), f"{term!r}: give the terms only; mailstack writes v=spf1")
                return None
        return Sender(SenderKind.SPF, spf_terms=terms)
    kind = reader.choice(item.get("type"), (*path, "type"), tuple(_SENDER_FIELDS))
    if kind is None:
        if item.get("type") is None:
            reader.fail((*path, "type"), "is required")
        return None
    data = reader.mapping(item, path, _SENDER_FIELDS[kind])
    if data is None:
        return None
    sender_kind = SenderKind(kind)
    if sender_kind is SenderKind.MICROSOFT:
        tenant = reader.string(data.get("tenant"), (*path, "tenant"))
        if tenant is None:
            reader.fail((*path, "tenant"), "is required for microsoft (the <tenant>.onmicrosoft.com prefix)")
            return None
        tenant = reader.convert(tenant, (*path, "tenant"), names.label)
        return Sender(sender_kind, tenant=tenant) if tenant else None
    if sender_kind in (SenderKind.GOOGLE, SenderKind.MAILJET):
        key = None
        if data.get("dkimKey") is not None:
            key = reader.convert(data["dkimKey"], (*path, "dkimKey"), _third_party_key)
        selector = None
        if data.get("dkimSelector") is not None:
            selector = reader.convert(data["dkimSelector"], (*path, "dkimSelector"), names.label)
        return Sender(sender_kind, dkim_key=key, dkim_selector=selector)
    return Sender(sender_kind)


def _third_party_key(value: Any) -> str:
    from modules import dkim as dkim_rules

    if not isinstance(value, str):
        raise ValueError("must be the DKIM public key (base64) shown by the provider")
    text = value.strip()
    if text.startswith("v=DKIM1") or "p=" in text:
        record = dkim_rules.parse(text)
        text = record.public_key
    b64 = dkim_rules.public_key_base64(text)
    algorithm, bits = dkim_rules.key_bits(b64)
    if algorithm == "rsa" and bits < dkim_rules.MIN_RSA_BITS:
        raise ValueError(f"RSA key of {bits} bits is under the minimum of {dkim_rules.MIN_RSA_BITS} (RFC 8301)")
    return b64


def _mx_list(reader: ConfigReader, value: Any, path: Path, domain: str | None) -> tuple[MxHost, ...]:
    if value == "google":
        return GOOGLE_MX
    if value == "microsoft":
        return microsoft_mx(domain or "invalid")
    items = reader.sequence(value, path) or []
    result: list[MxHost] = []
    for index, item in enumerate(items):
        data = reader.mapping(item, (*path, index), ("host", "priority"))
        if data is None:
            continue
        if data.get("host") is None:
            reader.fail((*path, index, "host"), "is required")
            continue
        host = reader.convert(data["host"], (*path, index, "host"), names.hostname)
        priority = reader.integer(data.get("priority"), (*path, index, "priority"), 0, 65535, default=10)
        if host and priority is not None:
            result.append(MxHost(host, priority))
    return tuple(result)


def _inbound(reader: ConfigReader, value: Any, odoo: Odoo | None, gateways: tuple[Gateway, ...] | None, domain: str | None) -> Inbound | None:
    path: Path = ("inbound",)
    data = reader.mapping(value, path, ("mode", "subdomain", "record", "mx", "aliases", "acceptAll"))
    if data is None:
        return None
    modes = tuple(m.value for m in InboundMode)
    if value is None:
        reader.fail(path, f"is required: {{mode: {'|'.join(modes)}, ...}} (none publishes a null MX: the domain takes no mail)")
        return None
    if data.get("mode") is None:
        # No default: "none" publishes a null MX (RFC 7505), which would silently stop
        # the mail of a domain whose mailboxes live elsewhere.
        reader.fail((*path, "mode"), f"is required: one of {', '.join(modes)} (none publishes a null MX: the domain takes no mail)")
        return None
    mode_text = reader.choice(data.get("mode"), (*path, "mode"), modes)
    if mode_text is None:
        return None
    mode = InboundMode(mode_text)
    subdomain = None
    has_subdomain = data.get("subdomain") is not None
    if has_subdomain:
        subdomain = reader.convert(data["subdomain"], (*path, "subdomain"), names.label)
    record = reader.choice(data.get("record"), (*path, "record"), ("mx", "cname"), default="mx") or "mx"
    mx: tuple[MxHost, ...] = ()
    if data.get("mx") is not None:
        if mode not in (InboundMode.FORWARD, InboundMode.IMAP):
            reader.fail((*path, "mx"), f"only applies to modes forward and imap, not {mode.value}")
        else:
            mx = _mx_list(reader, data["mx"], (*path, "mx"), domain)
    aliases: list[str] = []
    for index, alias in enumerate(reader.sequence(data.get("aliases"), (*path, "aliases")) or []):
        local = reader.convert(alias, (*path, "aliases", index), _local_part)
        if local and local not in aliases:
            aliases.append(local)
    accept_all = reader.boolean(data.get("acceptAll"), (*path, "acceptAll"))
    if mode is InboundMode.ODOO_MX:
        if odoo and not odoo.saas:
            reader.fail((*path, "mode"), "odoo-mx needs odoo.hosting online or sh (inbound on <db>.odoo.com)")
        if not has_subdomain:
            reader.fail((*path, "subdomain"), "is required for odoo-mx: Odoo's inbound mail must use a dedicated subdomain, never the root")
    elif data.get("record") is not None:
        reader.fail((*path, "record"), "only applies to mode odoo-mx")
    if mode is InboundMode.GATEWAY and not gateways:
        reader.fail((*path, "mode"), "gateway needs at least one entry in mailstack:gateways")
    if mode is InboundMode.NONE and subdomain:
        reader.fail((*path, "subdomain"), "does not apply to mode none")
    return Inbound(mode, subdomain, record, mx, tuple(aliases), accept_all)


def _dkim(reader: ConfigReader, value: Any) -> Dkim | None:
    path: Path = ("dkim",)
    data = reader.mapping(value, path, ("selector", "bits"))
    if data is None:
        return None
    selector = "mailstack"
    if data.get("selector") is not None:
        selector = reader.convert(data["selector"], (*path, "selector"), names.label) or selector
    bits = reader.integer(data.get("bits"), (*path, "bits"), 1024, 4096, default=2048)
    if bits is not None and bits not in (1024, 2048, 3072, 4096):
        reader.fail((*path, "bits"), f"{bits} is not one of 1024, 2048, 3072, 4096 (RFC 8301: at least 1024)")
    return Dkim(selector, bits or 2048)


def _spf(reader: ConfigReader, value: Any) -> Spf | None:
    data = reader.mapping(value, ("spf",), ("all",))
    if data is None:
        return None
    all_term = reader.choice(data.get("all"), ("spf", "all"), spf.ALL_QUALIFIERS, default="~all")
    return Spf(all_term or "~all")


def _uris(reader: ConfigReader, value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    uris: list[str] = []
    for index, item in enumerate(reader.sequence(value, path) or []):
        uri = reader.convert(item, (*path, index), dmarc.check_uri)
        if uri:
            uris.append(uri)
    return tuple(uris)


def _dmarc(reader: ConfigReader, value: Any) -> Dmarc | None:
    path: Path = ("dmarc",)
    data = reader.mapping(value, path, ("policy", "subdomainPolicy", "rua", "ruf", "adkim", "aspf", "pct", "fo"))
    if data is None:
        return None
    policy = reader.choice(data.get("policy"), (*path, "policy"), dmarc.POLICIES, default="none")
    sp = reader.choice(data.get("subdomainPolicy"), (*path, "subdomainPolicy"), dmarc.POLICIES)
    adkim = reader.choice(data.get("adkim"), (*path, "adkim"), dmarc.ALIGNMENTS, default="r")
    aspf = reader.choice(data.get("aspf"), (*path, "aspf"), dmarc.ALIGNMENTS, default="r")
    pct = reader.integer(data.get("pct"), (*path, "pct"), 0, 100)
    fo = None
    if data.get("fo") is not None:
        fo = str(data["fo"])
        if not set(fo.split(":")) <= dmarc.FO_VALUES:
            reader.fail((*path, "fo"), f"{fo!r} is not a ':'-list of 0, 1, d, s")
    rua = _uris(reader, data.get("rua"), (*path, "rua"))
    ruf = _uris(reader, data.get("ruf"), (*path, "ruf"))
    if policy is None or adkim is None or aspf is None:
        return None
    return Dmarc(policy, sp, rua, ruf, adkim, aspf, pct, fo)


def _mta_sts(reader: ConfigReader, value: Any, inbound: Inbound | None) -> MtaSts | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"  # the Pulumi engine passes booleans as strings
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    path: Path = ("mtaSts",)
    data = reader.mapping(value, path, ("mode", "maxAge"))
    if data is None:
        return None
    mode = reader.choice(data.get("mode"), (*path, "mode"), mta_sts.MODES, default="testing")
    max_age = reader.integer(data.get("maxAge"), (*path, "maxAge"), 86400, mta_sts.MAX_AGE_LIMIT, default=604800)
    if inbound and inbound.mode in (InboundMode.NONE,) :
        reader.fail(path, "MTA-STS needs an MX: inbound.mode is none")
    elif inbound and inbound.subdomain:
        # The _mta-sts record and the policy host belong to the domain whose MX the
        # policy lists; with a subdomain that is <subdomain>.<domain>, which mailstack
        # does not publish a policy for (and Odoo's host cannot serve one).
        reader.fail(path, f"MTA-STS is published for the domain itself, but inbound mail uses the subdomain {inbound.subdomain}; remove mtaSts or inbound.subdomain")
    if mode is None or max_age is None:
        return None
    return MtaSts(mode, max_age)


def _tls_rpt(reader: ConfigReader, value: Any) -> TlsRpt | None:
    if value is None:
        return None
    path: Path = ("tlsRpt",)
    data = reader.mapping(value, path, ("rua",))
    if data is None:
        return None
    rua = _uris(reader, data.get("rua"), (*path, "rua"))
    if not rua:
        reader.fail((*path, "rua"), "needs at least one mailto: or https: URI")
        return None
    return TlsRpt(rua)
