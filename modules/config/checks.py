"""The ``mailstack:checks`` key: what ``mailstack check`` skips for this stack, and
which DNS blocklists it asks about the gateways.

``{disable: [<check id>, ...], blocklists: [<DNSBL zone>, ...]}`` (blocklists: a list
of zone names, ``[]`` for none; absent: ``mailstack.rules.dnsbl.DEFAULT_ZONES``). The ids are checked here for their form (the same
error collector as every other key); whether each names a registered check is the
check suite's question, asked when it runs (``mailstack.checks.run``), which reads the
validated ``MailDomain.checks``.
"""

from __future__ import annotations

from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.model import Checks
from mailstack.rules import limits


def read_checks(reader: ConfigReader, value: Any) -> Checks | None:
    path: Path = ("checks",)
    data = reader.mapping(value, path, ("disable", "blocklists"))
    if data is None:
        return None
    blocklists = _blocklists(reader, data.get("blocklists"), (*path, "blocklists"))
    value = data.get("disable")
    if value is not None and not isinstance(value, list):
        reader.fail((*path, "disable"), "must be a list of check ids")
        return None
    items = reader.sequence(value, (*path, "disable"), what="check ids")
    if items is None:
        return None
    disabled: list[str] = []
    for index, item in enumerate(items):
        check_id = reader.convert(item, (*path, "disable", index), kinds.check_id)
        if check_id and check_id not in disabled:
            disabled.append(check_id)
    return Checks(tuple(disabled), blocklists)


def _blocklists(reader: ConfigReader, value: Any, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        reader.fail(path, "must be a list of DNS blocklist zones (e.g. [zen.spamhaus.org]), [] for none")
        return None
    zones: list[str] = []
    for index, item in enumerate(reader.sequence(value, path, limits.BLOCKLISTS, "blocklist zones") or []):
        zone = reader.convert(item, (*path, index), kinds.domain)
        if zone and zone not in zones:
            zones.append(zone)
    return tuple(zones)
