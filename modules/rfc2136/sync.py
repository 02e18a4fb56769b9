"""Plan, then apply all or nothing, on an RFC 2136 primary: read, decide, write, verify.

``prepare`` transfers every zone the records live in (``wire.transfer``) and runs the
change calculator (``mailstack.plan.changes``) over the planned records, the live zones
and what mailstack owned before. ``apply`` refuses a plan with any conflict before the
first write (``ConflictError``, listing every conflict with its ways out), then sends one
guarded update per zone (``mailstack.rfc2136.apply``), in zone order, and reads the
zones back to confirm every planned record is served and every deleted one gone.

Why this is all or nothing: within a zone the server applies the one update as a
transaction, guarded by the zone as read. Across zones (an alias domain in its own zone)
the updates are separate; if the run stops between them (the server dies, the network
goes), the zones already written hold exactly their part of the plan and nothing else,
and the next run resumes: those records read back as planned (``same``/``adopt``), the
rest is written — never twice, because a record set is a set and every write is
guarded. The caller keeps what mailstack owns across runs (Pulumi's state, the lab's
journal); ``before_zone``/``after_zone`` let it record progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mailstack.core import names
from mailstack.core.errors import ProviderError
from mailstack.core.record import Record
from mailstack.plan import changes as change_calc
from mailstack.plan.changes import Change, ChangeSet
from mailstack.rfc2136 import apply as updates
from mailstack.rfc2136 import wire
from mailstack.rfc2136.wire import Server, ZoneSnapshot


class ConflictError(ProviderError):
    """The plan conflicts with records mailstack does not own: nothing was written."""

    def __init__(self, conflicts: Sequence[Change]) -> None:
        self.conflicts = tuple(conflicts)
        lines = [f"{len(self.conflicts)} conflict(s) with records mailstack does not own; nothing was written:"]
        lines += [f"  - {c.note}" for c in self.conflicts]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A change decided against the zones as read, ready to apply."""

    server: Server
    #: The zone of every name the change touches.
    zone_of: Mapping[str, str]
    snapshots: Mapping[str, ZoneSnapshot]
    changes: ChangeSet

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(sorted(self.snapshots))

    def writes_in(self, zone: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes.writes if self.zone_of[c.name] == zone)


def zone_map(zones: Iterable[str], records: Iterable[tuple[str, Record]]) -> dict[str, str]:
    """The zone of each record name: as given with the record, checked to contain it."""
    known = {names.normalize(z) for z in zones}
    mapping: dict[str, str] = {}
    for zone, record in records:
        zone = names.normalize(zone)
        if zone not in known or not names.within(record.name, zone):
            raise ProviderError(f"{record.name} is not inside zone {zone} (zones: {', '.join(sorted(known))})")
        mapping[record.name] = zone
    return mapping


def live_records(snapshots: Iterable[ZoneSnapshot]) -> dict[str, tuple[Record, ...]]:
    """Every live record of the zones, by name (a name lives in one zone)."""
    found: dict[str, tuple[Record, ...]] = {}
    for snapshot in snapshots:
        found.update(snapshot.records())
    return found


def read(server: Server, zones: Iterable[str]) -> dict[str, ZoneSnapshot]:
    """One transfer per zone."""
    return {zone: wire.transfer(server, zone) for zone in sorted(set(zones))}


def prepare(
    server: Server,
    planned: Sequence[tuple[str, Record]],
    owned: Sequence[tuple[str, Record]] = (),
    *,
    adopt: Mapping[str, str] | None = None,
    allow_delete: bool = True,
) -> Prepared:
    """Read every zone of ``planned`` and ``owned`` (``(zone, record)`` pairs) and decide."""
    zones = {z for z, _ in planned} | {z for z, _ in owned}
    zone_of = zone_map(zones, [*owned, *planned])
    snapshots = read(server, zones)
    decided = change_calc.calculate(
        [r for _, r in planned], live_records(snapshots.values()), [r for _, r in owned],
        adopt=adopt, allow_delete=allow_delete,
    )
    return Prepared(server, zone_of, snapshots, decided)


def apply(
    prepared: Prepared,
    *,
    before_zone: Callable[[str], None] | None = None,
    after_zone: Callable[[str], None] | None = None,
) -> tuple[Change, ...]:
    """Write the change, one guarded update per zone; ConflictError before any write.

    Returns the writes made. A zone with nothing to write gets no message at all, so
    an apply that changes nothing leaves every SOA serial as it was.
    """
    if prepared.changes.conflicts:
        raise ConflictError(prepared.changes.conflicts)
    written: list[Change] = []
    for zone in prepared.zones:
        writes = prepared.writes_in(zone)
        if not writes:
            continue
        if before_zone is not None:
            before_zone(zone)
        message = updates.zone_update(prepared.server, zone, writes, prepared.snapshots[zone])
        wire.send(prepared.server, message, zone, f"update zone {zone} ({updates.describe(writes)})")
        written += writes
        if after_zone is not None:
            after_zone(zone)
    if written:
        verify(prepared)
    return tuple(written)


def verify(prepared: Prepared) -> None:
    """Read the written zones back: every planned record served, every deleted one gone.

    A server may accept an update and still not store a record (BIND silently ignores a
    CNAME added beside other data, RFC 2136 §3.4.2.2); this makes that an error.
    """
    zones = sorted({prepared.zone_of[c.name] for c in prepared.changes.writes})
    live = live_records(read(prepared.server, zones).values())
    present = {change_calc.identity(r) for records in live.values() for r in records}
    missing = [r for r in prepared.changes.owned_after() if prepared.zone_of[r.name] in zones and change_calc.identity(r) not in present]
    kept = [c.live for c in prepared.changes.of(change_calc.Action.DELETE) if c.live and change_calc.identity(c.live) in present]
    if missing or kept:
        what = [f"{r.name} {r.type} {r.value!r} is not served" for r in missing]
        what += [f"{r.name} {r.type} {r.value!r} is still served" for r in kept]
        raise ProviderError(f"{prepared.server.where} accepted the update but {'; '.join(what)}: see the server's log")
