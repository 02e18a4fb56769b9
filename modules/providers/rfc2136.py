"""The RFC 2136 dynamic provider: one Pulumi resource per planned record set.

A ``Rfc2136Record`` owns exactly one record set (name and type, with all its values)
in one zone on one authoritative server; updates are TSIG-signed and guarded by
prerequisites (``mailstack.rfc2136``), so a record set someone else wrote is never
overwritten or deleted. The operations live in ``mailstack.rfc2136.recordset``; this
adapter unwraps Pulumi's values, validates inputs and words the results. This module
has no import side effects and the provider keeps
no clients: Pulumi pickles the provider into the state (``__provider``) and runs it in
another process, where every method builds what it needs from its arguments.

Properties (inputs and outputs alike, outputs are always the full state):
``server, port, zone, name, type, ttl, values, tsigKeyName, tsigAlgorithm, tsigSecret``.
``values`` are rdata in presentation form (``10 mx1.example.net.``, ``"v=spf1 …"``),
canonicalised by ``check`` so diffs compare values, not spellings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi.dynamic as dynamic
from pulumi.output import Unknown
from pulumi.runtime import rpc

from mailstack.core import names, tsig
from mailstack.rfc2136 import recordset
from mailstack.rfc2136.recordset import REPLACE_KEYS, SECRET_KEY, UPDATE_KEYS, record_id
from mailstack.rfc2136.wire import TYPES, canonical_values

SECRET_OUTPUTS = [SECRET_KEY]


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi does not know yet (preview, computed upstream)."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    return isinstance(value, list) and any(is_unknown(v) for v in value)


def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


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
        if "tsigAlgorithm" in known and known["tsigAlgorithm"] not in tsig.ALGORITHMS:
            fail("tsigAlgorithm", f"{known['tsigAlgorithm']!r} is not one of {', '.join(tsig.ALGORITHMS)}")
        if "tsigSecret" in known and not tsig.valid_secret(str(_plain(known["tsigSecret"]))):
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
        plain = _plain_props(props)
        return dynamic.CreateResult(record_id(plain), recordset.state(plain, recordset.create(plain)))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        """What is live: the record set's TTL and values, or gone (empty id)."""
        plain = _plain_props(props)
        live = recordset.read(plain)
        if live is None:
            return dynamic.ReadResult("", props)
        return dynamic.ReadResult(id_ or record_id(plain), recordset.state(plain, live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        """Replace values or TTL while the live set still holds exactly the old values."""
        plain = _plain_props(news)
        return dynamic.UpdateResult(recordset.state(plain, recordset.update(_plain_props(olds), plain)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Delete the record set while it holds exactly our values; gone already is fine."""
        recordset.delete(_plain_props(props))


def _plain_props(props: Mapping[str, Any]) -> dict[str, Any]:
    """The property bag with Pulumi's secret wrappers removed."""
    return {key: _plain(value) for key, value in props.items() if key != "__provider"}


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


