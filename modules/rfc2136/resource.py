"""The records mailstack owns on one RFC 2136 primary, as a property bag: the resource's operations.

One resource holds every planned record of a stack, in every zone of the stack, on one
primary. Its property bag (the Pulumi provider's inputs and outputs, the lab's journal):

``server, port, tsigKeyName, tsigAlgorithm, tsigSecret`` — where and how updates go;
``zones`` — the zones written to; ``records`` — each ``{zone, name, type, ttl, value}``
(``value`` the rdata in presentation form: ``10 mx1.example.net.``, ``"v=spf1 …"``);
``adopt`` — planned record key → a live value mailstack may take over
(``mailstack:dns.adopt``); ``allowDelete`` — may a change delete mail-critical records.

``apply(olds, news)`` is create (``olds`` None), update and delete (``news`` None) in
one: the records of ``olds`` are what mailstack owned, those of ``news`` what it wants;
``mailstack.rfc2136.sync`` reads the zones, decides and writes all or nothing. The Pulumi
provider (``mailstack.providers.rfc2136``) is a thin adapter around these functions and
the lab calls them directly, so both run the same code without the lab importing
Pulumi. Plain values only: secrets arrive unwrapped.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mailstack.core import names, zonefile
from mailstack.core.errors import ProviderError
from mailstack.core.record import Record
from mailstack.rfc2136 import sync
from mailstack.rfc2136.sync import Prepared
from mailstack.rfc2136.wire import Server, canonical
from mailstack.rules import dkim

#: A change of any of these is another server: replace the resource.
REPLACE_KEYS = ("server", "port")
UPDATE_KEYS = ("zones", "records", "tsigKeyName", "tsigAlgorithm", "tsigSecret", "adopt", "allowDelete")
REQUIRED_KEYS = ("server", "port", "zones", "records", "tsigKeyName", "tsigAlgorithm", "tsigSecret")
SECRET_KEY = "tsigSecret"
RECORD_KEYS = ("zone", "name", "type", "ttl", "value")


def record_map(zone: str, record: Record) -> dict[str, Any]:
    """One planned record as the resource holds it (value canonical, TXT split at 255)."""
    return {
        "zone": zone,
        "name": record.name,
        "type": record.type,
        "ttl": record.ttl,
        "value": canonical(record.type, zonefile.rdata(record).to_text()),
    }


def sort_key(item: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (str(item["zone"]), str(item["name"]), str(item["type"]), str(item["value"]))


def record_maps(records: Iterable[Record], zone_of: Callable[[str], str]) -> list[dict[str, Any]]:
    """The planned records in the resource's form, sorted so diffs are stable."""
    return sorted((record_map(zone_of(r.name), r) for r in records), key=sort_key)


def pending_record(name: str, rdtype: str, ttl: int) -> Record:
    """A planned record whose value is not known yet (the key Pulumi generates)."""
    return Record(name, rdtype, dkim.txt_value(dkim.PENDING_KEY), ttl, needs_gateway_key=True)


def records_of(props: Mapping[str, Any], unknown: Callable[[Any], bool] = lambda _: False) -> list[tuple[str, Record]]:
    """``(zone, Record)`` for every record of a bag; a value ``unknown`` says is not
    known yet becomes a pending record (compared by role only)."""
    found: list[tuple[str, Record]] = []
    for item in props.get("records") or ():
        name, rdtype = names.normalize(str(item["name"])), str(item["type"]).upper()
        ttl, value = int(item["ttl"]), item["value"]
        if unknown(value):
            found.append((names.normalize(str(item["zone"])), pending_record(name, rdtype, ttl)))
        else:
            found.append((names.normalize(str(item["zone"])), zonefile.from_text(name, rdtype, ttl, str(value))))
    return found


def server_of(props: Mapping[str, Any]) -> Server:
    """The server and TSIG key a property bag names; a host name is resolved here,
    because dnspython sends to addresses only."""
    address = str(props["server"])
    port = int(props["port"])
    if not names.is_ip(address):
        try:
            address = str(socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as err:
            raise ProviderError(f"cannot resolve DNS server {props['server']}: {err}") from err
    return Server(address, port, names.normalize(str(props["tsigKeyName"])), str(props["tsigAlgorithm"]), str(props[SECRET_KEY]))


def record_id(props: Mapping[str, Any]) -> str:
    """``zone[,zone…]@server:port``: readable in ``pulumi stack`` output, unique per server."""
    zones = ",".join(sorted(names.normalize(str(z)) for z in props.get("zones") or ()))
    return f"{zones}@{props['server']}:{int(props['port'])}"


def state(props: Mapping[str, Any]) -> dict[str, Any]:
    """The full property bag after an operation: the inputs, records canonical and sorted."""
    result = {k: props[k] for k in (*REPLACE_KEYS, *UPDATE_KEYS) if k in props}
    result["port"] = int(result["port"])
    result["records"] = sorted(({k: item[k] for k in RECORD_KEYS} for item in props.get("records") or ()), key=sort_key)
    result.setdefault("adopt", {})
    result["allowDelete"] = bool(props.get("allowDelete", False))
    return result


def prepare(olds: Mapping[str, Any] | None, news: Mapping[str, Any] | None, unknown: Callable[[Any], bool] = lambda _: False) -> Prepared:
    """Read the zones and decide: ``olds`` owned, ``news`` wanted (either may be None)."""
    target = news if news is not None else olds
    assert target is not None
    planned = records_of(news, unknown) if news is not None else []
    owned = records_of(olds) if olds is not None else []
    allow_delete = True if news is None else bool(news.get("allowDelete", False))
    adopt = {str(k): str(v) for k, v in ((news or {}).get("adopt") or {}).items()}
    return sync.prepare(server_of(target), planned, owned, adopt=adopt, allow_delete=allow_delete)


def apply(
    olds: Mapping[str, Any] | None,
    news: Mapping[str, Any] | None,
    *,
    before_zone: Callable[[str], None] | None = None,
    after_zone: Callable[[str], None] | None = None,
) -> Prepared:
    """Create, update or delete: bring the server from ``olds`` to ``news`` all or nothing.

    ConflictError (nothing written) when the plan clashes with records mailstack does
    not own; ProviderError when the server refuses. Deleting (``news`` None) removes only
    the records of ``olds`` that are still live exactly as written.
    """
    prepared = prepare(olds, news)
    sync.apply(prepared, before_zone=before_zone, after_zone=after_zone)
    return prepared


def read(props: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bag with only the records still live as written; None when none is."""
    owned = records_of(props)
    snapshots = sync.read(server_of(props), {z for z, _ in owned} | {str(z) for z in props.get("zones") or ()})
    live = sync.live_records(snapshots.values())
    present = {(r.name, r.type, r.content, r.priority) for records in live.values() for r in records}
    kept = [item for item, (_, record) in zip(props.get("records") or (), owned)
            if (record.name, record.type, record.content, record.priority) in present]
    if not kept:
        return None
    return state({**props, "records": kept})
