"""One record set managed by RFC 2136: the operations behind the Pulumi provider.

A managed record set is described by a property bag (the provider's inputs and
outputs: ``server, port, zone, name, type, ttl, values, tsigKeyName, tsigAlgorithm,
tsigSecret``); ``create``/``read``/``update``/``delete`` bring the server there with
guarded updates (``mailstack.rfc2136.wire``) and return the record set as it is now.
The Pulumi provider (``mailstack.providers.rfc2136``) is a thin adapter around these
functions, and the lab calls them directly, so both run the same code without the
lab importing Pulumi. Plain values only: secrets arrive unwrapped.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from typing import Any

from mailstack.core import names, zonefile
from mailstack.core.errors import ProviderError
from mailstack.core.record import Record
from mailstack.rfc2136.wire import (
    RecordSet,
    Server,
    canonical_values,
    describe,
)
from mailstack.rfc2136.wire import create as wire_create
from mailstack.rfc2136.wire import delete as wire_delete
from mailstack.rfc2136.wire import read as wire_read
from mailstack.rfc2136.wire import replace as wire_replace

#: A change of any of these is a different record set somewhere else: replace it.
REPLACE_KEYS = ("server", "port", "zone", "name", "type")
UPDATE_KEYS = ("ttl", "values", "tsigKeyName", "tsigAlgorithm", "tsigSecret")
SECRET_KEY = "tsigSecret"


def record_set(props: Mapping[str, Any]) -> RecordSet:
    """The record set a property bag describes (values canonicalised)."""
    rdtype = str(props["type"]).upper()
    return RecordSet(
        names.normalize(str(props["name"])),
        rdtype,
        int(props["ttl"]),
        canonical_values(rdtype, [str(v) for v in props["values"]]),
    )


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
    return Server(
        address,
        port,
        names.normalize(str(props["tsigKeyName"])),
        str(props["tsigAlgorithm"]),
        str(props[SECRET_KEY]),
    )


def record_id(props: Mapping[str, Any]) -> str:
    """``name/TYPE@zone``: readable in ``pulumi stack`` output, unique per server."""
    return f"{names.normalize(str(props['name']))}/{str(props['type']).upper()}@{names.normalize(str(props['zone']))}"


def state(props: Mapping[str, Any], rrset: RecordSet) -> dict[str, Any]:
    """The full property bag after an operation: the inputs with the live record set."""
    result = {k: props[k] for k in (*REPLACE_KEYS, *UPDATE_KEYS) if k in props}
    result.update(name=rrset.name, type=rrset.type, ttl=rrset.ttl, values=list(rrset.values))
    result["port"] = int(result["port"])
    return result


def create(props: Mapping[str, Any]) -> RecordSet:
    """Add the record set; adopt it when it is already there with exactly our values,
    refuse when it holds anything else."""
    server, zone, wanted = server_of(props), names.normalize(str(props["zone"])), record_set(props)
    live = wire_read(server, wanted.name, wanted.type)
    if live is None:
        wire_create(server, zone, wanted)
    elif live.values != wanted.values:
        raise ProviderError(
            f"create {wanted.name} {wanted.type}: it already exists at {server.where} with values "
            f"mailstack did not write ({describe(live.values)}); left untouched — delete it by hand, "
            "or declare exactly those values, then run again"
        )
    elif live.ttl != wanted.ttl:
        wire_replace(server, zone, live, wanted)
    return wanted


def read(props: Mapping[str, Any]) -> RecordSet | None:
    """What is live for the record set: its TTL and values, None when gone."""
    current = record_set(props)
    return wire_read(server_of(props), current.name, current.type)


def update(olds: Mapping[str, Any], news: Mapping[str, Any]) -> RecordSet:
    """Replace values or TTL while the live set still holds exactly the old values."""
    old, new = record_set(olds), record_set(news)
    server, zone = server_of(news), names.normalize(str(news["zone"]))
    if old != new:
        try:
            wire_replace(server, zone, old, new)
        except ProviderError:
            live = wire_read(server, new.name, new.type)
            if live is None or live.values != new.values or live.ttl != new.ttl:
                raise
    return new


def delete(props: Mapping[str, Any]) -> None:
    """Delete the record set while it holds exactly our values; gone already is fine."""
    old = record_set(props)
    server, zone = server_of(props), names.normalize(str(props["zone"]))
    try:
        wire_delete(server, zone, old)
    except ProviderError:
        if wire_read(server, old.name, old.type) is not None:
            raise


def record_sets(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    """The plan's records grouped into record sets (name, type), in plan order.

    RFC 2136 and DNS itself deal in record sets: two gateways' MX records are one set,
    so they are one resource and one update.
    """
    sets: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        sets.setdefault((record.name, record.type), []).append(record)
    return sets


def rdata_values(records: Iterable[Record]) -> list[str]:
    """Presentation-form values of one record set (TXT split at 255 bytes)."""
    return [zonefile.rdata(record).to_text() for record in records]


def address_first(key: tuple[str, str]) -> int:
    """Order of creation: addresses before the MX that points at them, because BIND
    refuses an MX whose in-zone target has no address (update integrity check)."""
    return 0 if key[1] in ("A", "AAAA") else 1
