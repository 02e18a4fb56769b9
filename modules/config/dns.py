"""The ``mailstack:dns`` section: where records go (Cloudflare or RFC 2136) and how.

Validated here so that an RFC 2136 stack without a server or key name, or a zone that
does not contain the domain, is refused before any provider is touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core import names, tsig
from mailstack.core.errors import quote
from mailstack.rules import limits
from mailstack.core.model import Dns


def read_dns(reader: ConfigReader, value: Any, domain: str | None, aliases: tuple[str, ...]) -> Dns | None:
    path: Path = ("dns",)
    fields = ("provider", "zone", "ttl", "aliasZones", "server", "port", "tsigKeyName", "tsigAlgorithm", "allowDelete", "adopt")
    data = reader.mapping(value, path, fields)
    if data is None:
        return None
    provider = reader.choice(data.get("provider"), (*path, "provider"), ("cloudflare", "rfc2136"), default="cloudflare")
    zone = domain or ""
    if data.get("zone") is not None:
        zone = reader.convert(data["zone"], (*path, "zone"), kinds.domain) or zone
        if domain and zone and not names.within(domain, zone):
            reader.fail((*path, "zone"), f"{domain} is not inside zone {zone}")
    ttl = reader.integer(data.get("ttl"), (*path, "ttl"), 1, 86400, default=3600)
    if ttl is not None and ttl != 1 and ttl < 30:
        reader.fail((*path, "ttl"), f"{ttl} is too short: use 1 (Cloudflare automatic) or 30 to 86400")
    if ttl == 1 and provider == "rfc2136":
        reader.fail((*path, "ttl"), "1 means 'automatic' on Cloudflare only; give seconds for rfc2136")
    alias_zones: list[tuple[str, str]] = []
    zone_map = reader.mapping(data.get("aliasZones"), (*path, "aliasZones"), aliases) or {}
    for alias, alias_zone in zone_map.items():
        checked = reader.convert(alias_zone, (*path, "aliasZones", alias), kinds.domain)
        if checked and not names.within(alias, checked):
            reader.fail((*path, "aliasZones", alias), f"{alias} is not inside zone {checked}")
        elif checked:
            alias_zones.append((alias, checked))
    for alias in aliases:
        if alias not in zone_map:
            # An alias domain below the main zone lives in it; any other is its own zone.
            alias_zones.append((alias, zone if zone and names.within(alias, zone) else alias))
    server = port = key_name = None
    algorithm = tsig.DEFAULT_ALGORITHM
    if provider == "rfc2136":
        if data.get("server") is None:
            reader.fail((*path, "server"), "is required for provider rfc2136 (the primary's address)")
        else:
            server = reader.convert(data["server"], (*path, "server"), kinds.host_address)
        port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=53)
        if data.get("tsigKeyName") is None:
            reader.fail((*path, "tsigKeyName"), "is required for provider rfc2136")
        else:
            key_name = reader.convert(data["tsigKeyName"], (*path, "tsigKeyName"), _key_name)
        algorithm = reader.choice(
            data.get("tsigAlgorithm"), (*path, "tsigAlgorithm"), tsig.ALGORITHMS, default=tsig.DEFAULT_ALGORITHM
        ) or algorithm
    else:
        for key in ("server", "port", "tsigKeyName", "tsigAlgorithm"):
            if data.get(key) is not None:
                reader.fail((*path, key), "only applies to provider rfc2136")
    allow_delete = reader.boolean(data.get("allowDelete"), (*path, "allowDelete"))
    adopt = _adopt(reader, data.get("adopt"), (*path, "adopt"), provider)
    if provider is None or ttl is None:
        return None
    return Dns(provider, zone, ttl, tuple(alias_zones), server, port or 53, key_name, algorithm, allow_delete, adopt)


#: A Cloudflare import id of ``cloudflare.DnsRecord``: ``<zone_id>/<dns_record_id>``.
_CLOUDFLARE_IMPORT_ID = re.compile(r"^[0-9a-f]{32}/[0-9a-f]{32}$")
_RECORD_KEY = re.compile(r"^[a-z0-9]+-[a-z0-9_.*-]+$")


def _adopt(reader: ConfigReader, value: Any, path: Path, provider: str | None) -> tuple[tuple[str, str], ...]:
    """``dns.adopt``: planned record key → what to take over. Keys are checked against the
    plan later (``mailstack.plan``); here their form and the values' kind per provider."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        reader.fail(path, "must be a mapping of planned record keys (as `mailstack records --format json` names them) to what is adopted")
        return ()
    adopted: list[tuple[str, str]] = []
    for key, item in value.items():
        where = (*path, str(key))
        if not isinstance(key, str) or not _RECORD_KEY.fullmatch(key):
            reader.fail(where, "is not a record key such as txt-example.com or mx-example.com-10-mx1.example.com")
            continue
        text = reader.string(item, where)  # no control characters, at most 4,096
        if text is None:
            continue
        if provider == "cloudflare" and not _CLOUDFLARE_IMPORT_ID.fullmatch(text):
            reader.fail(where, f"{quote(text)} is not a Cloudflare import id <zone_id>/<record_id> (32 hex digits each; see `mailstack adopt`)")
        else:
            adopted.append((key, text))
    return tuple(sorted(adopted))



def _key_name(value: Any) -> str:
    text = names.normalize(kinds.text(value)) if isinstance(value, str) else ""
    try:
        for part in text.split("."):
            names.label(part, allow_underscore=True)
    except names.InvalidName:
        raise ValueError(f"{quote(value)} is not a TSIG key name") from None
    if not text or len(text) > limits.NAME_LENGTH.value:
        raise ValueError(f"{quote(value)} is not a TSIG key name (DNS labels, at most {limits.NAME_LENGTH.value} characters)")
    return text
