"""Publish the plan's records in the lab with the RFC 2136 provider's own operations.

This is what ``pulumi up`` does with ``Rfc2136Record`` resources, without the engine
(and without importing Pulumi): ``create`` a record set that has no state yet,
``update`` one whose declaration changed (or delete and create it again where Pulumi
would replace it), ``delete`` one the plan no longer declares, and keep each record
set's state in ``records.json`` (the TSIG secret left out). The operations are
``mailstack.rfc2136.recordset``'s, which the Pulumi provider calls too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailstack.plan import Plan
from mailstack.rfc2136 import recordset
from mailstack.rfc2136.recordset import (
    REPLACE_KEYS,
    SECRET_KEY,
    address_first,
    rdata_values,
    record_id,
    record_sets,
)
from mailstack.rfc2136.wire import canonical_values


@dataclass(frozen=True, slots=True)
class Change:
    """One provider call made (or not needed) for a record set."""

    action: str  # create | update | delete | same
    id: str


def desired(plan: Plan, server: str, port: int, key_name: str, secret: str) -> list[dict[str, Any]]:
    """The property bag of every planned record set, addresses first (values in their
    canonical form, as the provider's ``check`` makes them)."""
    sets = record_sets(plan.records)
    inputs = []
    for key in sorted(sets, key=address_first):
        members = sets[key]
        inputs.append(
            {
                "server": server,
                "port": port,
                "zone": plan.zone_of(key[0]),
                "name": key[0],
                "type": key[1],
                "ttl": min(r.ttl for r in members),
                "values": list(canonical_values(key[1], rdata_values(members))),
                "tsigKeyName": key_name,
                "tsigAlgorithm": plan.stack.dns.tsig_algorithm,
                SECRET_KEY: secret,
            }
        )
    return inputs


def apply(wanted: list[dict[str, Any]], state_file: Path, secret: str) -> list[Change]:
    """Bring the server to ``wanted``; raise ProviderError on refusal.

    Changes are made in order (addresses before the MX pointing at them) and the state
    is saved after each call, so an interrupted run resumes where it stopped.
    """
    saved = _load(state_file)
    changes: list[Change] = []
    wanted_ids = []
    for news in wanted:
        resource_id = record_id(news)
        wanted_ids.append(resource_id)
        olds = saved.get(resource_id)
        if olds is None:
            saved[resource_id] = recordset.state(news, recordset.create(news))
            changes.append(Change("create", resource_id))
        else:
            olds = {**olds, SECRET_KEY: secret}
            if any(olds.get(key) != news.get(key) for key in REPLACE_KEYS):
                recordset.delete(olds)
                saved.pop(resource_id)
                _save(state_file, saved)
                saved[resource_id] = recordset.state(news, recordset.create(news))
                changes.append(Change("replace", resource_id))
            elif recordset.record_set(olds) != recordset.record_set(news) or any(
                olds.get(key) != news.get(key) for key in ("tsigKeyName", "tsigAlgorithm")
            ):
                saved[resource_id] = recordset.state(news, recordset.update(olds, news))
                changes.append(Change("update", resource_id))
            else:
                changes.append(Change("same", resource_id))
        _save(state_file, saved)
    for resource_id in [i for i in saved if i not in wanted_ids]:
        recordset.delete({**saved[resource_id], SECRET_KEY: secret})
        saved.pop(resource_id)
        _save(state_file, saved)
        changes.append(Change("delete", resource_id))
    return changes


def refresh(state_file: Path, secret: str) -> dict[str, list[str] | None]:
    """What the server holds for each record set in the state (``recordset.read``)."""
    live: dict[str, list[str] | None] = {}
    for resource_id, outs in _load(state_file).items():
        found = recordset.read({**outs, SECRET_KEY: secret})
        live[resource_id] = list(found.values) if found is not None else None
    return live


def _load(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save(path: Path, saved: dict[str, dict[str, Any]]) -> None:
    public = {key: {k: v for k, v in outs.items() if k != SECRET_KEY} for key, outs in saved.items()}
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(public, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
