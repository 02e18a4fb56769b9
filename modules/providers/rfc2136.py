"""The RFC 2136 dynamic provider: the records mailstack owns on one primary, as one resource.

A ``Rfc2136ZoneRecords`` resource holds every planned record of a stack in every zone it
writes to, on one authoritative server (the property bag of ``mailstack.rfc2136.resource``).
Owning single records, not record sets, lets mailstack share a name with records it does
not own (verification TXTs beside its SPF); one resource per stack lets every write be
decided before the first one: the provider reads the zones, runs the change calculator
(``mailstack.plan.changes``) and applies one guarded update per zone, all or nothing
(``mailstack.rfc2136.sync``).

The calculator runs at preview too: ``check`` (which Pulumi calls before every preview
and update) turns each conflict with a record mailstack does not own into a check
failure naming the record and the ways out, so ``pulumi preview`` fails before anything
is written; ``diff`` reports live drift (a record of mailstack's removed by hand) as a
change, so ``pulumi up`` puts it back. What mailstack owns is the Pulumi state: ``olds``.

This module has no import side effects and the provider keeps no clients: Pulumi
pickles the provider into the state (``__provider``) and runs it in another process,
where every method builds what it needs from its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi.dynamic as dynamic
from pulumi.output import Unknown
from pulumi.runtime import rpc

from mailstack.core import names, tsig
from mailstack.core.errors import ProviderError
from mailstack.rfc2136 import resource
from mailstack.rfc2136.resource import REPLACE_KEYS, REQUIRED_KEYS, SECRET_KEY, UPDATE_KEYS, record_id
from mailstack.rfc2136.wire import TYPES, canonical

SECRET_OUTPUTS = [SECRET_KEY]


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi does not know yet (preview, computed upstream)."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    return isinstance(value, list) and any(is_unknown(v) for v in value)


def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


def _integer(value: Any, low: int, high: int) -> int:
    number = int(value)
    if number != float(value) or not low <= number <= high:
        raise ValueError
    return number


class Rfc2136Provider(dynamic.ResourceProvider):
    """Create, update and delete the records mailstack owns, all or nothing per zone."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        """Validate and normalise inputs, then plan against the live zones: every conflict
        is a failure (preview stops). Messages never contain the secret."""
        failures: list[dynamic.CheckFailure] = []
        inputs = dict(news)

        def fail(key: str, reason: str) -> None:
            failures.append(dynamic.CheckFailure(key, reason))

        for key in REQUIRED_KEYS:
            if inputs.get(key) is None:
                fail(key, "is required")
        if failures:
            return dynamic.CheckResult(inputs, failures)
        known = {k: _plain(v) for k, v in inputs.items() if not is_unknown(v)}
        for key, low, high in (("port", 1, 65535),):
            if key in known:
                try:
                    inputs[key] = _integer(known[key], low, high)
                except (TypeError, ValueError):
                    fail(key, f"{known[key]!r} is not an integer between {low} and {high}")
        if "tsigAlgorithm" in known and known["tsigAlgorithm"] not in tsig.ALGORITHMS:
            fail("tsigAlgorithm", f"{known['tsigAlgorithm']!r} is not one of {', '.join(tsig.ALGORITHMS)}")
        if "tsigSecret" in known and not tsig.valid_secret(str(known["tsigSecret"])):
            fail("tsigSecret", "is not a base64 TSIG secret (as printed by tsig-keygen)")
        if "tsigKeyName" in known:
            inputs["tsigKeyName"] = names.normalize(str(known["tsigKeyName"]))
        zones: list[str] = []
        if "zones" in known:
            zones = [names.normalize(str(z)) for z in known["zones"] or []]
            if not zones:
                fail("zones", "must list the zones written to")
            inputs["zones"] = sorted(set(zones))
        records = _plain(news["records"])
        if isinstance(records, list):
            inputs["records"] = [self._record(item, zones, fail) for item in records]
        elif not is_unknown(records):
            fail("records", "must be a list of {zone, name, type, ttl, value}")
        adopt = _plain(news.get("adopt")) or {}
        if not is_unknown(adopt) and not (isinstance(adopt, dict) and all(isinstance(v, str) for v in adopt.values())):
            fail("adopt", "must map planned record keys to the live values mailstack takes over")
        inputs["adopt"] = adopt
        inputs["allowDelete"] = bool(_plain(news.get("allowDelete")) or False)
        if not failures and self._plannable(inputs):
            failures += self._plan_failures(olds, inputs)
        return dynamic.CheckResult(inputs, failures)

    @staticmethod
    def _record(item: Any, zones: list[str], fail: Any) -> Any:
        if not isinstance(item, dict) or not set(resource.RECORD_KEYS) <= set(item):
            fail("records", f"{str(item)[:80]!r} is not a {{zone, name, type, ttl, value}} record")
            return item
        record = dict(item)
        name, zone = names.normalize(str(item["name"])), names.normalize(str(item["zone"]))
        rdtype = str(item["type"]).upper()
        record.update(name=name, zone=zone, type=rdtype)
        if zones and zone not in zones:
            fail("records", f"{name}: zone {zone} is not one of the resource's zones ({', '.join(zones)})")
        elif not names.within(name, zone):
            fail("records", f"{name} is not inside zone {zone}")
        if rdtype not in TYPES:
            fail("records", f"{name}: {item['type']!r} is not one of {', '.join(TYPES)}")
            return record
        try:
            record["ttl"] = _integer(item["ttl"], 30, 2147483647)
        except (TypeError, ValueError):
            fail("records", f"{name} {rdtype}: ttl {item['ttl']!r} is not an integer between 30 and 2147483647")
        if not is_unknown(item["value"]):
            try:
                record["value"] = canonical(rdtype, str(item["value"]))
            except ValueError as err:
                fail("records", f"{name}: {err}")
        return record

    @staticmethod
    def _plannable(inputs: Mapping[str, Any]) -> bool:
        """True when everything but record values is known (values may wait for a key)."""
        if any(is_unknown(inputs.get(k)) for k in ("server", "port", "zones", "tsigKeyName", "tsigAlgorithm", "tsigSecret", "adopt")):
            return False
        records = inputs.get("records")
        return isinstance(records, list) and all(
            isinstance(r, dict) and not any(is_unknown(r.get(k)) for k in ("zone", "name", "type", "ttl")) for r in records
        )

    @staticmethod
    def _plan_failures(olds: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[dynamic.CheckFailure]:
        """The change against the live zones, decided as ``pulumi up`` would make it."""
        owned = _plain_props(olds) if olds.get("records") else None
        try:
            prepared = resource.prepare(owned, _plain_props(inputs), unknown=is_unknown)
        except ProviderError as err:
            return [dynamic.CheckFailure("server", f"cannot plan against the live zones: {err}")]
        return [dynamic.CheckFailure("records", change.note) for change in prepared.changes.conflicts]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Replace on another server; update when the inputs differ, or when the live
        zones drifted from them (a record of mailstack's removed or edited by hand)."""
        replaces = [k for k in REPLACE_KEYS if is_unknown(news.get(k)) or _plain(olds.get(k)) != _plain(news.get(k))]
        changed = [k for k in UPDATE_KEYS if self._differs(k, olds, news)]
        if not replaces and not changed:
            try:
                drifted = resource.prepare(_plain_props(olds), _plain_props(news)).changes.changed
            except ProviderError:
                drifted = True  # undecidable: let update read again and say why
            changed = ["records"] if drifted else []
        return dynamic.DiffResult(changes=bool(replaces or changed), replaces=replaces, stables=[], delete_before_replace=True)

    @staticmethod
    def _differs(key: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        new = news.get(key)
        if is_unknown(new):
            return True
        old, new = _plain(olds.get(key)), _plain(new)
        if key == "records":
            return bool(resource.state({"records": old or [], "port": 0})["records"] != resource.state({"records": new or [], "port": 0})["records"])
        if key == "allowDelete":
            return bool(old) != bool(new)
        if key == "adopt":
            return (old or {}) != (new or {})
        return bool(old != new)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        """Plan against the live zones with nothing owned yet, then write all or nothing:
        identical records are adopted, conflicting ones refuse the whole change."""
        plain = _plain_props(props)
        resource.apply(None, plain)
        return dynamic.CreateResult(record_id(plain), resource.state(plain))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        """What is live: the records of the state still served as written, or gone (empty id)."""
        live = resource.read(_plain_props(props))
        if live is None:
            return dynamic.ReadResult("", props)
        return dynamic.ReadResult(id_ or record_id(live), live)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        """Bring the zones from the records owned (``olds``) to the planned ones (``news``)."""
        plain = _plain_props(news)
        resource.apply(_plain_props(olds), plain)
        return dynamic.UpdateResult(resource.state(plain))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Delete the records mailstack owns that are still live as written; nothing else."""
        resource.apply(_plain_props(props), None)


def _plain_props(props: Mapping[str, Any]) -> dict[str, Any]:
    """The property bag with Pulumi's secret wrappers removed."""
    return {key: _plain(value) for key, value in props.items() if key != "__provider"}


class Rfc2136ZoneRecords(dynamic.Resource, module="mailstack", name="Rfc2136ZoneRecords"):
    """The records mailstack owns on one RFC 2136 primary; the TSIG secret stays secret."""

    records: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self,
        resource_name: str,
        *,
        server: pulumi.Input[str],
        port: pulumi.Input[int],
        zones: Sequence[str],
        records: Sequence[Mapping[str, Any]],
        tsig_key_name: pulumi.Input[str],
        tsig_algorithm: pulumi.Input[str],
        tsig_secret: pulumi.Input[str],
        adopt: pulumi.Input[dict[str, str]] | None = None,
        allow_delete: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "server": server,
            "port": port,
            "zones": list(zones),
            "records": [dict(r) for r in records],
            "tsigKeyName": tsig_key_name,
            "tsigAlgorithm": tsig_algorithm,
            "tsigSecret": pulumi.Output.secret(tsig_secret),
            "adopt": adopt or {},
            "allowDelete": allow_delete,
        }
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        super().__init__(Rfc2136Provider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret_opts))
