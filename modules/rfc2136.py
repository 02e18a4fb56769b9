"""The RFC 2136 dynamic provider: one Pulumi resource per planned record set.

A ``Rfc2136Record`` owns exactly one record set (name and type, with all its values)
in one zone on one authoritative server; updates are TSIG-signed and guarded by
prerequisites (``modules.rfc2136_wire``), so a record set someone else wrote is never
overwritten or deleted. This module has no import side effects and the provider keeps
no clients: Pulumi pickles the provider into the state (``__provider``) and runs it in
another process, where every method builds what it needs from its arguments.

Properties (inputs and outputs alike, outputs are always the full state):
``server, port, zone, name, type, ttl, values, tsigKeyName, tsigAlgorithm, tsigSecret``.
``values`` are rdata in presentation form (``10 mx1.example.net.``, ``"v=spf1 …"``),
canonicalised by ``check`` so diffs compare values, not spellings.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from typing import Any

import pulumi
import pulumi.dynamic as dynamic
from pulumi.output import Unknown
from pulumi.runtime import rpc

from modules import names, zonefile
from modules.errors import ProviderError
from modules.model import Record
from modules.rfc2136_wire import (
    TYPES,
    RecordSet,
    Server,
    canonical_values,
    create as wire_create,
    delete as wire_delete,
    describe,
    read as wire_read,
    replace as wire_replace,
    valid_secret,
)

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
#: A change of any of these is a different record set somewhere else: replace it.
REPLACE_KEYS = ("server", "port", "zone", "name", "type")
UPDATE_KEYS = ("ttl", "values", "tsigKeyName", "tsigAlgorithm", "tsigSecret")
SECRET_OUTPUTS = ["tsigSecret"]


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi does not know yet (preview, computed upstream)."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    return isinstance(value, list) and any(is_unknown(v) for v in value)


def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


def record_set(props: Mapping[str, Any]) -> RecordSet:
    """The record set a property bag describes (values canonicalised)."""
    rdtype = str(props["type"]).upper()
    return RecordSet(
        names.normalize(str(props["name"])),
        rdtype,
        int(props["ttl"]),
        canonical_values(rdtype, [str(v) for v in _plain(props["values"])]),
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
        str(_plain(props["tsigSecret"])),
    )


def record_id(props: Mapping[str, Any]) -> str:
    """``name/TYPE@zone``: readable in ``pulumi stack`` output, unique per server."""
    return f"{names.normalize(str(props['name']))}/{str(props['type']).upper()}@{names.normalize(str(props['zone']))}"


class Rfc2136Provider(dynamic.ResourceProvider):
    """CRUD of one record set by TSIG-signed RFC 2136 updates."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        """Validate and normalise inputs; messages never contain the secret."""
        failures: list[dynamic.CheckFailure] = []
        inputs = dict(news)

        def fail(key: str, reason: str) -> None:
            failures.append(dynamic.CheckFailure(key, reason))

        for key in (*REPLACE_KEYS, *UPDATE_KEYS):
            if inputs.get(key) is None:
                fail(key, "is required")
        if failures:
            return dynamic.CheckResult(inputs, failures)
        known = {k: v for k, v in inputs.items() if not is_unknown(v)}
        if "name" in known:
            inputs["name"] = names.normalize(str(known["name"]))
        if "zone" in known:
            inputs["zone"] = names.normalize(str(known["zone"]))
        if "type" in known:
            inputs["type"] = str(known["type"]).upper()
            if inputs["type"] not in TYPES:
                fail("type", f"{known['type']!r} is not one of {', '.join(TYPES)}")
        if "name" in known and "zone" in known and not names.within(inputs["name"], inputs["zone"]):
            fail("name", f"{inputs['name']} is not inside zone {inputs['zone']}")
        for key, low, high in (("port", 1, 65535), ("ttl", 30, 2147483647)):
            if key in known:
                try:
                    number = int(known[key])
                    if number != float(known[key]) or not low <= number <= high:
                        raise ValueError
                    inputs[key] = number
                except (TypeError, ValueError):
                    fail(key, f"{known[key]!r} is not an integer between {low} and {high}")
        if "tsigAlgorithm" in known and known["tsigAlgorithm"] not in ALGORITHMS:
            fail("tsigAlgorithm", f"{known['tsigAlgorithm']!r} is not one of {', '.join(ALGORITHMS)}")
        if "tsigSecret" in known and not valid_secret(str(_plain(known["tsigSecret"]))):
            fail("tsigSecret", "is not a base64 TSIG secret (as printed by tsig-keygen)")
        if "tsigKeyName" in known:
            inputs["tsigKeyName"] = names.normalize(str(known["tsigKeyName"]))
        values = _plain(news["values"])
        if not isinstance(values, list) or not values:
            fail("values", "must be a non-empty list of record values")
        elif not is_unknown(values) and "type" in known and inputs["type"] in TYPES:
            try:
                inputs["values"] = list(canonical_values(inputs["type"], [str(v) for v in values]))
            except ValueError as err:
                fail("values", str(err))
            if inputs["type"] == "CNAME" and len(values) != 1:
                fail("values", "a CNAME holds exactly one value (RFC 1034 §3.6.2)")
        return dynamic.CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Replace on a new name, type, zone or server; update on TTL, values or key.

        Replacement deletes first: create refuses a record set that exists, and the
        old and new one may be the same set on the same server under another spelling.
        """
        replaces = [k for k in REPLACE_KEYS if is_unknown(news.get(k)) or _plain(olds.get(k)) != _plain(news.get(k))]
        changed = [k for k in UPDATE_KEYS if self._differs(k, olds, news)]
        return dynamic.DiffResult(
            changes=bool(replaces or changed),
            replaces=replaces,
            stables=[],
            delete_before_replace=True,
        )

    @staticmethod
    def _differs(key: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        new = news.get(key)
        if is_unknown(new):
            return True
        old = _plain(olds.get(key))
        new = _plain(new)
        if key == "values":
            rdtype = str(news.get("type", olds.get("type", ""))).upper()
            try:
                return canonical_values(rdtype, [str(v) for v in old or []]) != canonical_values(
                    rdtype, [str(v) for v in new or []]
                )
            except ValueError:
                return True
        if key == "ttl":
            return old is None or new is None or int(old) != int(new)
        return bool(old != new)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
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
        return dynamic.CreateResult(record_id(props), self._state(props, wanted))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        """What is live: the record set's TTL and values, or gone (empty id)."""
        current = record_set(props)
        live = wire_read(server_of(props), current.name, current.type)
        if live is None:
            return dynamic.ReadResult("", props)
        return dynamic.ReadResult(id_ or record_id(props), self._state(props, live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
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
        return dynamic.UpdateResult(self._state(news, new))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Delete the record set while it holds exactly our values; gone already is fine."""
        old = record_set(props)
        server, zone = server_of(props), names.normalize(str(props["zone"]))
        try:
            wire_delete(server, zone, old)
        except ProviderError:
            if wire_read(server, old.name, old.type) is not None:
                raise

    @staticmethod
    def _state(props: Mapping[str, Any], rrset: RecordSet) -> dict[str, Any]:
        state = {k: _plain(props[k]) for k in (*REPLACE_KEYS, *UPDATE_KEYS) if k in props}
        state.update(name=rrset.name, type=rrset.type, ttl=rrset.ttl, values=list(rrset.values))
        state["port"] = int(state["port"])
        return state


class Rfc2136Record(dynamic.Resource, module="mailstack", name="Rfc2136Record"):
    """One record set managed by ``Rfc2136Provider``; the TSIG secret stays secret."""

    values: pulumi.Output[list[str]]

    def __init__(
        self,
        resource_name: str,
        *,
        server: pulumi.Input[str],
        port: pulumi.Input[int],
        zone: pulumi.Input[str],
        name: pulumi.Input[str],
        type: pulumi.Input[str],  # noqa: A002 - the property's name
        ttl: pulumi.Input[int],
        values: pulumi.Input[list[pulumi.Input[str]]],
        tsig_key_name: pulumi.Input[str],
        tsig_algorithm: pulumi.Input[str],
        tsig_secret: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "server": server,
            "port": port,
            "zone": zone,
            "name": name,
            "type": type,
            "ttl": ttl,
            "values": values,
            "tsigKeyName": tsig_key_name,
            "tsigAlgorithm": tsig_algorithm,
            "tsigSecret": pulumi.Output.secret(tsig_secret),
        }
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        super().__init__(Rfc2136Provider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret_opts))


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
