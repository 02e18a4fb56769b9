"""The ``mailstack:gateway`` key: how the own gateways are run, beside *what* they serve.

The model (``mailstack.core.model``) says which domains, aliases and hosts exist; this key
adds what only the gateway servers need: which addresses Odoo submits from, an optional
SMTP AUTH user, an outbound relay host, the TLS certificate, size and rate limits, and
how the mailgate reaches Odoo's XML-RPC. It is validated inside
``mailstack.config.stack.from_config`` with the same error collector as every other key, so a
mistake here is reported together with the others and names its key
(``mailstack:gateway.relayHost: ...``). Every field has a working default, so a stack
with gateways and without this key renders; a stack with this key and no gateways is
refused (the settings would configure nothing).

Secrets never appear here: the Odoo password is a *file path* on the gateway, the SMTP
AUTH password and the SSH private key are Pulumi secrets (``mailstack:sshPrivateKey``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core import names
from mailstack.core.errors import quote
from mailstack.rules import dane
from mailstack.rules.limits import Limit
from mailstack.core.model import (
    DEFAULT_MAILGATE_CONCURRENCY,
    MAILGATE_DELIVERIES,
    DEFAULT_PASSWORD_FILE,
    DEFAULT_SIZE_LIMIT,
    DEFAULT_TLS_CERT,
    DEFAULT_TLS_KEY,
    DEFAULT_UID,
    LOOPBACK,
    MAX_MAILGATE_CONCURRENCY,
    GatewaySettings,
    Mailgate,
    RateLimits,
    RelayHost,
    SmtpAuth,
    Tls,
)

_KEYS = (
    "odooAddresses", "smtpAuth", "relayHost", "tls", "messageSizeLimit", "rateLimits", "mailgate", "deploy",
    "recipientCheck", "recipientRefresh",
)
#: Odoo's submitting addresses (Postfix mynetworks, OpenDKIM InternalHosts).
ODOO_ADDRESSES = Limit(100, "they are Odoo's own servers; trust a network instead of listing more hosts")
#: The mailgate's Odoo URL (defaults to mailstack:odoo.url).
MAILGATE_URL = kinds.url(("http", "https"))


def read(reader: ConfigReader, value: Any, *, odoo_url: str | None, odoo_database: str | None, has_gateways: bool,
         hosts: tuple[str, ...] = ()) -> GatewaySettings | None:
    """Validate ``mailstack:gateway``; errors go to ``reader`` and None is returned.

    Returns None without error when the stack has no gateways and no key (nothing to
    run); defaults fill every field that is not given.
    """
    path: Path = ("gateway",)
    if value is not None and not has_gateways:
        reader.fail(path, "configures the own gateways, but mailstack:gateways is empty")
        return None
    if not has_gateways:
        return None
    data = reader.mapping(value, path, _KEYS)
    if data is None:
        return None
    errors_before = reader.error_count
    addresses = _addresses(reader, data.get("odooAddresses"), (*path, "odooAddresses"))
    smtp_auth = _smtp_auth(reader, data.get("smtpAuth"), (*path, "smtpAuth"))
    relay = None
    if data.get("relayHost") is not None:
        relay = reader.convert(data["relayHost"], (*path, "relayHost"), parse_relay_host)
    tls = _tls(reader, data.get("tls"), (*path, "tls"), hosts)
    size = reader.integer(data.get("messageSizeLimit"), (*path, "messageSizeLimit"), 1048576, 1073741824, default=DEFAULT_SIZE_LIMIT)
    rates = _rates(reader, data.get("rateLimits"), (*path, "rateLimits"))
    mailgate = _mailgate(reader, data.get("mailgate"), (*path, "mailgate"), odoo_url, odoo_database)
    deploy = reader.boolean(data.get("deploy"), (*path, "deploy"), default=True)
    check = reader.choice(data.get("recipientCheck"), (*path, "recipientCheck"), ("odoo", "static"), default="odoo")
    refresh = reader.integer(data.get("recipientRefresh"), (*path, "recipientRefresh"), 10, 3600, default=60)
    if reader.error_count > errors_before or not (tls and rates and mailgate and size is not None and check and refresh is not None):
        return None  # reported here, or (mailgate's defaults) at mailstack:odoo
    return GatewaySettings(mailgate, addresses, smtp_auth, relay, tls, size, rates, deploy, check, refresh)


def parse_relay_host(value: Any) -> RelayHost:
    """``host``, ``host:port`` or ``[host]:port`` (IPv6 in brackets); port 25 by default."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a host name or address, e.g. smtp.example.com or [smtp.example.com]:587")
    text = kinds.text(value)
    port = 25
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{quote(value)} is not [host] or [host]:port")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{quote(value)}: port {quote(port_text)} is not a number from 1 to 65535")
        port = int(port_text)
    if names.is_ip(host):
        return RelayHost(str(ipaddress.ip_address(host)), port)
    try:
        return RelayHost(names.hostname(host), port)
    except names.InvalidName as err:
        raise ValueError(f"{quote(value)} is not a host: {err}") from err


def _addresses(reader: ConfigReader, value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    items = reader.sequence(value, path, ODOO_ADDRESSES, "addresses")
    if not items:
        return LOOPBACK
    result: list[str] = []
    for index, item in enumerate(items):
        checked = reader.convert(item if isinstance(item, str) else str(item)[:50], (*path, index), kinds.ip_network)
        if checked is None:
            continue
        network = ipaddress.ip_network(checked)
        if network.prefixlen < (16 if network.version == 4 else 48):
            reader.fail((*path, index), f"{network} is too wide: every host in it could relay through the gateway")
            continue
        if str(network) not in result:
            result.append(str(network))
    if not result:
        reader.fail(path, "needs at least one address Odoo submits from")
    return tuple(result)


def _smtp_auth(reader: ConfigReader, value: Any, path: Path) -> SmtpAuth | None:
    if value is None or value is False:
        return None
    data = reader.mapping(value, path, ("user",))
    if data is None:
        return None
    if data.get("user") is None:
        reader.fail((*path, "user"), "is required (the SMTP AUTH user Odoo logs in as)")
        return None
    user = reader.string(data.get("user"), (*path, "user"), kinds.sasl_user)
    return SmtpAuth(user) if user else None


def _tls(reader: ConfigReader, value: Any, path: Path, hosts: tuple[str, ...] = ()) -> Tls | None:
    data = reader.mapping(value, path, ("cert", "key", "required", "dane"))
    if data is None:
        return None
    dane, dane_hosts = _dane(reader, data.get("dane"), (*path, "dane"), hosts)
    required = reader.boolean(data.get("required"), (*path, "required"))
    paths: dict[str, str] = {}
    for key in ("cert", "key"):
        raw = data.get(key)
        if raw is None:
            if required:
                reader.fail((*path, key), "is required when tls.required is true (the certificate Odoo must see)")
            continue
        text = reader.string(raw, (*path, key), kinds.pem_path)
        if text is not None:
            paths[key] = text
    if (data.get("cert") is None) != (data.get("key") is None) and not required:
        missing = "key" if data.get("cert") is not None else "cert"
        reader.fail((*path, missing), "give the certificate and its key together")
    return Tls(paths.get("cert", DEFAULT_TLS_CERT), paths.get("key", DEFAULT_TLS_KEY), required, dane, dane_hosts)


def _dane(reader: ConfigReader, value: Any, path: Path, hosts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """``tls.dane: {digest: HEX, next: HEX, hosts: {<gateway>: {digest, next}}}``: the
    gateways' key digest and, during a rollover, the next key's (both published; RFC
    7671 §8.1); ``hosts`` gives a gateway with its own key its own pair. Every gateway
    needs a digest, shared or its own."""
    if value is None:
        return (), ()
    data = reader.mapping(value, path, ("digest", "next", "hosts"))
    if data is None:
        return (), ()
    shared = _pair(reader, data, path, required=False)
    own: list[tuple[str, tuple[str, ...]]] = []
    given = data.get("hosts")
    if given is not None and not isinstance(given, dict):
        reader.fail((*path, "hosts"), "must be a mapping of gateway host name to {digest, next}")
        given = None
    for host, entry in (given or {}).items():
        where = (*path, "hosts", str(host)[:80])
        if not isinstance(host, str) or host not in hosts:
            reader.fail(where, f"is not a gateway of this stack (mailstack:gateways: {', '.join(hosts) or 'none'})")
            continue
        pair = reader.mapping(entry, where, ("digest", "next"))
        if pair is not None:
            own.append((host, _pair(reader, pair, where, required=True)))
    missing = [h for h in hosts if not shared and h not in dict(own)]
    if missing:
        reader.fail((*path, "digest"), f"is required: the SHA-256 digest of the gateway key's SubjectPublicKeyInfo (no digest for {', '.join(missing)})")
    return shared, tuple(own)


def _pair(reader: ConfigReader, data: dict[str, Any], path: Path, *, required: bool) -> tuple[str, ...]:
    """``digest`` (and ``next``) of one key pair, checked; ``next`` needs ``digest``."""
    if data.get("digest") is None:
        if required or data.get("next") is not None:
            reader.fail((*path, "digest"), "is required: the SHA-256 digest of the gateway key's SubjectPublicKeyInfo")
        return ()
    found: list[str] = []
    for key in ("digest", "next"):
        if data.get(key) is None:
            continue
        checked = reader.convert(data[key], (*path, key), _digest)
        if checked is not None and checked not in found:
            found.append(checked)
    return tuple(found)


def _digest(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string of 64 hex digits")
    return dane.digest(value)


def _rates(reader: ConfigReader, value: Any, path: Path) -> RateLimits | None:
    data = reader.mapping(value, path, ("connections", "messages", "recipients", "concurrency"))
    if data is None:
        return None
    default = RateLimits()
    values = {
        key: reader.integer(data.get(key), (*path, key), 1, 100000, default=getattr(default, key))
        for key in ("connections", "messages", "recipients", "concurrency")
    }
    if any(v is None for v in values.values()):
        return None
    return RateLimits(**{k: int(v) for k, v in values.items() if v is not None})


def _mailgate(reader: ConfigReader, value: Any, path: Path, odoo_url: str | None, odoo_database: str | None) -> Mailgate | None:
    data = reader.mapping(value, path, ("url", "database", "uid", "login", "passwordFile", "timeout", "concurrency", "delivery"))
    if data is None:
        return None
    given_url = data.get("url")
    url = reader.string(given_url, (*path, "url"), MAILGATE_URL) if given_url is not None else odoo_url
    if url is None and given_url is None and not reader.has_error(("odoo",)):
        reader.fail((*path, "url"), "is required: Odoo's base URL (defaults to mailstack:odoo.url, which is unset)")
    given_database = data.get("database")
    database = reader.string(given_database, (*path, "database"), kinds.database_name) if given_database is not None else odoo_database
    if database is None and given_database is None and not reader.has_error(("odoo",)):
        reader.fail((*path, "database"), "is required: Odoo's database (defaults to mailstack:odoo.database, which is unset)")
    login = reader.string(data.get("login"), (*path, "login"), kinds.login_name)
    uid: int | None = None if login else DEFAULT_UID
    if data.get("uid") is not None:
        if login:
            reader.fail((*path, "uid"), "give uid or login, not both")
        uid = reader.integer(data["uid"], (*path, "uid"), 1, 2**31 - 1)
    password_file = reader.string(data.get("passwordFile"), (*path, "passwordFile"), kinds.absolute_path) or DEFAULT_PASSWORD_FILE
    timeout = reader.integer(data.get("timeout"), (*path, "timeout"), 1, 3600, default=60)
    concurrency = reader.integer(data.get("concurrency"), (*path, "concurrency"), 1, MAX_MAILGATE_CONCURRENCY,
                                 default=DEFAULT_MAILGATE_CONCURRENCY)
    delivery = reader.choice(data.get("delivery"), (*path, "delivery"), MAILGATE_DELIVERIES, default=MAILGATE_DELIVERIES[0])
    if url is None or database is None or timeout is None or concurrency is None or delivery is None:
        return None
    return Mailgate(url.rstrip("/"), database, uid, login, password_file, timeout, concurrency, delivery)
