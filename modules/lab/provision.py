"""Publish the stack's records in the lab through the RFC 2136 provider's own methods.

This is what ``pulumi up`` does with ``Rfc2136Record`` resources, without the engine:
``check`` the inputs, ``create`` a record set that has no state yet, ``diff`` and
``update`` one whose declaration changed, ``delete`` one the stack no longer declares,
and keep each resource's outputs in ``records.json`` (the TSIG secret left out). So
the lab exercises exactly the provider code production runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.errors import ProviderError
from modules.model import MailDomain
from modules.plan import plan
from modules.rfc2136 import Rfc2136Provider, address_first, rdata_values, record_id, record_sets

SECRET_KEY = "tsigSecret"


@dataclass(frozen=True, slots=True)
class Change:
    """One provider call made (or not needed) for a record set."""

    action: str  # create | update | delete | same
    id: str


def desired(stack: MailDomain, gateway_public_pem: str, server: str, port: int, key_name: str, secret: str) -> list[dict[str, Any]]:
    """Provider inputs for every planned record set, addresses first."""
    records = plan(stack, gateway_public_pem)
    sets = record_sets(records)
    inputs = []
    for key in sorted(sets, key=address_first):
        members = sets[key]
        inputs.append(
            {
                "server": server,
                "port": port,
                "zone": stack.dns.zone_of(key[0]),
                "name": key[0],
                "type": key[1],
                "ttl": min(r.ttl for r in members),
                "values": rdata_values(members),
                "tsigKeyName": key_name,
                "tsigAlgorithm": stack.dns.tsig_algorithm,
                SECRET_KEY: secret,
            }
        )
    return inputs


def apply(wanted: list[dict[str, Any]], state_file: Path, secret: str) -> list[Change]:
    """Bring the server to ``wanted`` with the provider; raise ProviderError on refusal.

    Changes are made in order (addresses before the MX pointing at them) and the state
    is saved after each call, so an interrupted run resumes where it stopped.
    """
    provider = Rfc2136Provider()
    saved = _load(state_file)
    changes: list[Change] = []
    wanted_ids = []
    for news_raw in wanted:
        result = provider.check({}, news_raw)
        if result.failures:
            problems = "; ".join(f"{f.property}: {f.reason}" for f in result.failures)
            raise ProviderError(f"{news_raw['name']} {news_raw['type']}: invalid inputs: {problems}")
        news = result.inputs
        resource_id = record_id(news)
        wanted_ids.append(resource_id)
        olds = saved.get(resource_id)
        if olds is None:
            created = provider.create(news)
            saved[resource_id] = created.outs or {}
            changes.append(Change("create", created.id))
        else:
            olds = {**olds, SECRET_KEY: secret}
            diff = provider.diff(resource_id, olds, news)
            if diff.replaces:
                provider.delete(resource_id, olds)
                saved.pop(resource_id)
                _save(state_file, saved)
                saved[resource_id] = provider.create(news).outs or {}
                changes.append(Change("replace", resource_id))
            elif diff.changes:
                saved[resource_id] = provider.update(resource_id, olds, news).outs or {}
                changes.append(Change("update", resource_id))
            else:
                changes.append(Change("same", resource_id))
        _save(state_file, saved)
    for resource_id in [i for i in saved if i not in wanted_ids]:
        provider.delete(resource_id, {**saved[resource_id], SECRET_KEY: secret})
        saved.pop(resource_id)
        _save(state_file, saved)
        changes.append(Change("delete", resource_id))
    return changes


def refresh(state_file: Path, secret: str) -> dict[str, list[str] | None]:
    """What the server holds for each record set in the state (``provider.read``)."""
    provider = Rfc2136Provider()
    live: dict[str, list[str] | None] = {}
    for resource_id, outs in _load(state_file).items():
        result = provider.read(resource_id, {**outs, SECRET_KEY: secret})
        live[resource_id] = list(result.outs["values"]) if result.id and result.outs else None
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
