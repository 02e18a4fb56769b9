"""Publish the plan's records in the lab with the RFC 2136 resource's own operations.

This is what ``pulumi up`` does with the ``Rfc2136ZoneRecords`` resource, without the
engine (and without importing Pulumi): ``mailstack.rfc2136.resource.apply(olds, news)``
reads the lab's zones, decides the whole change with the change calculator and writes it
all or nothing. Where Pulumi keeps the state, the lab keeps a journal,
``records.json`` (the TSIG secret left out):

- ``owned``: the records mailstack wrote and the last apply confirmed;
- ``pending``: the records of an apply in progress, saved before its first write.

Ownership for the next apply is ``owned`` ∪ ``pending``, so an apply interrupted between
two zones (the server died) is resumed by the next one: what was written reads back as
planned, the rest is written, and a record written by the interrupted run is known to be
mailstack's even if the plan changed meanwhile. A conflict writes nothing and leaves the
journal as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailstack.core.record import Record
from mailstack.plan import Plan
from mailstack.plan.changes import ChangeSet
from mailstack.rfc2136 import resource
from mailstack.rfc2136.resource import SECRET_KEY, record_maps, records_of


def desired(plan: Plan, server: str, port: int, key_name: str, secret: str) -> dict[str, Any]:
    """The property bag of the plan, as the Pulumi component builds it."""
    return {
        "server": server,
        "port": port,
        "zones": sorted(set(plan.zones.values())),
        "records": record_maps(plan.records, plan.zone_of),
        "tsigKeyName": key_name,
        "tsigAlgorithm": plan.stack.dns.tsig_algorithm,
        SECRET_KEY: secret,
        "adopt": dict(plan.stack.dns.adopt),
        "allowDelete": plan.stack.dns.allow_delete,
    }


@dataclass
class Journal:
    """The lab's ``records.json``: what mailstack owns, and what an apply is writing."""

    path: Path
    owned: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Journal:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, list(data.get("owned") or []), list(data.get("pending") or []))

    def save(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps({"owned": self.owned, "pending": self.pending}, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)

    def olds(self, wanted: dict[str, Any]) -> dict[str, Any] | None:
        """What mailstack owns as a property bag on ``wanted``'s server, None when nothing."""
        items = {resource.sort_key(i): i for i in [*self.owned, *self.pending]}
        if not items:
            return None
        zones = sorted({*wanted["zones"], *(str(i["zone"]) for i in items.values())})
        return {**wanted, "zones": zones, "records": [items[k] for k in sorted(items)]}

    def records(self) -> list[Record]:
        """The records owned (confirmed), as Records."""
        return [record for _, record in records_of({"records": self.owned})]


def apply(wanted: dict[str, Any], journal_file: Path, *, after_zone: Any = None) -> ChangeSet:
    """Bring the server to ``wanted`` all or nothing; ConflictError (nothing written,
    journal unchanged) or ProviderError on refusal. Returns the change decided."""
    journal = Journal.load(journal_file)

    def before(_zone: str) -> None:
        if not journal.pending:
            journal.pending = list(wanted["records"])
            journal.save()

    prepared = resource.apply(journal.olds(wanted), wanted, before_zone=before, after_zone=after_zone)
    journal.owned, journal.pending = resource.state(wanted)["records"], []
    journal.save()
    return prepared.changes


def live(journal_file: Path, server_bag: dict[str, Any]) -> list[tuple[Record, bool]]:
    """Each record the journal owns, and whether the server serves it as written."""
    journal = Journal.load(journal_file)
    owned = journal.records()
    if not owned:
        return []
    found = resource.read({**server_bag, "zones": sorted({str(i["zone"]) for i in journal.owned}), "records": journal.owned})
    served = {(r.name, r.type, r.content, r.priority) for _, r in records_of(found)} if found else set()
    return [(r, (r.name, r.type, r.content, r.priority) in served) for r in owned]
