"""The change calculator: planned records + live records (+ what mailstack owned) → a value.

One pure function, ``calculate``, decides what an apply would do at every name the plan
touches, before anything is written, and returns a ``ChangeSet``: sorted ``Change``
values of create / adopt / same / update / delete / conflict, plus the records mailstack
does not own at those names (``unmanaged``: shown, left alone). The RFC 2136 provider and
the lab apply it (``mailstack.rfc2136.sync``), ``mailstack plan`` prints it, and
``mailstack diff`` and the ``published.*`` checks read live drift from it, so "what
conflicts" means one thing everywhere. No I/O: the callers fetch (RFC 2136 zone transfer,
plain DNS queries) and pass the records found at each name.

Ownership is per record (RR), not per record set, because real names are shared
(``mailstack.rules.coexistence``): mailstack adds its SPF string to an apex TXT set full
of verification tokens and never touches them. What mailstack owns comes from the caller:
the Pulumi state (the provider's ``olds``), the lab's journal, or ``--owned FILE`` (the
``records`` stack output). A live record is

- **ours** when it is exactly a record mailstack owned: it may be deleted;
- **ours by role** when it plays an exclusive role (SPF, DMARC, a DKIM selector's key…)
  in which mailstack owned a record at that name and type, or when the user declared it
  (``mailstack:dns.adopt``): a planned record of that role may replace it;
- **foreign** otherwise: never written to. Beside a planned record of an exclusive role it
  is a conflict (a second SPF), elsewhere it is ``unmanaged``.

A record set has one TTL (RFC 2181 §5.2) and RFC 2136 servers give the whole set the TTL
of a record added to it (BIND does), so a write into a set that keeps foreign records
uses the set's live TTL: their TTL never changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailstack.core.record import Record
from mailstack.plan.records import order_key
from mailstack.rules import coexistence, protection


class Action(StrEnum):
    """What an apply does about one record."""

    CREATE = "create"  # add the planned record
    ADOPT = "adopt"  # live exactly as planned but not mailstack's yet: taken over, nothing written
    SAME = "same"  # live as planned and mailstack's
    UPDATE = "update"  # replace a live record of mailstack's (or one declared in dns.adopt), or its TTL
    DELETE = "delete"  # remove a record of mailstack's the plan no longer has
    CONFLICT = "conflict"  # cannot be done without touching someone else's record: nothing is written
    UNMANAGED = "unmanaged"  # someone else's record at a name mailstack touches: left alone


#: Actions that write to DNS.
WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})
_RANK = {a: i for i, a in enumerate((Action.CONFLICT, Action.DELETE, Action.UPDATE, Action.CREATE, Action.ADOPT, Action.SAME, Action.UNMANAGED))}
#: The zone's own machinery, never planned and never reported.
UNTRACKED = frozenset({"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "TYPE65534"})


@dataclass(frozen=True, slots=True)
class Change:
    """One decision. ``planned`` is the record mailstack wants (None for delete and
    unmanaged); ``live`` the live record concerned (None for create); ``ttl`` the TTL a
    write uses; ``note`` explains (for a conflict: what clashes and the ways out)."""

    action: Action
    name: str
    type: str
    planned: Record | None = None
    live: Record | None = None
    ttl: int | None = None
    note: str = ""

    @property
    def writes(self) -> bool:
        return self.action in WRITES

    def as_json(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "name": self.name,
            "type": self.type,
            "planned": self.planned.as_json() if self.planned else None,
            "live": self.live.as_json() if self.live else None,
            "ttl": self.ttl,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Every decision of one plan against one live state, sorted by name and type."""

    changes: tuple[Change, ...] = field(default_factory=tuple)

    def of(self, *actions: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in actions)

    @property
    def conflicts(self) -> tuple[Change, ...]:
        return self.of(Action.CONFLICT)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.writes)

    @property
    def changed(self) -> bool:
        """True when applying would write something."""
        return bool(self.writes)

    def counts(self) -> dict[str, int]:
        """How many changes of each action, every action listed."""
        return {a.value: sum(1 for c in self.changes if c.action is a) for a in Action}

    def owned_after(self) -> tuple[Record, ...]:
        """The records mailstack owns once this change is applied: every planned one."""
        owned = {c.planned for c in self.changes if c.planned is not None and c.action is not Action.CONFLICT}
        return tuple(sorted(owned, key=order_key))


def names_to_read(planned: Iterable[Record], owned: Iterable[Record] = (), extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every name ``calculate`` looks at: a fetcher must read each (all types)."""
    return tuple(sorted({r.name for r in planned} | {r.name for r in owned} | set(extra)))


def identity(record: Record) -> tuple[str, str, str, int | None]:
    """A record without its TTL: what makes two RRs the same RR."""
    return (record.name, record.type, record.content, record.priority)


@dataclass(frozen=True)
class _Owner:
    """What is mailstack's: exact records, roles per (name, type), declared adoptions."""

    exact: frozenset[tuple[str, str, str, int | None]]
    roles: frozenset[tuple[str, str, str]]
    adopt: Mapping[str, str]
    allow_delete: bool
    compare_ttl: bool

    def owns(self, live: Record) -> bool:
        return identity(live) in self.exact

    def owns_role(self, live: Record) -> bool:
        role = coexistence.role(live)
        return coexistence.exclusive(role) and (live.name, live.type, role) in self.roles

    def adopted(self, planned: Record, live: Record) -> bool:
        value = self.adopt.get(planned.key)
        return value is not None and live.name == planned.name and live.type == planned.type and _same_value(value, live)


def _same_value(declared: str, live: Record) -> bool:
    text = declared.strip()
    if live.type == "TXT":
        return text == live.content or text.strip('"') == live.content
    return text.rstrip(".").lower() == live.value.rstrip(".").lower()


def calculate(
    planned: Iterable[Record],
    live: Mapping[str, Sequence[Record]],
    owned: Iterable[Record] = (),
    *,
    adopt: Mapping[str, str] | None = None,
    allow_delete: bool = True,
    compare_ttl: bool = True,
    extra_names: Iterable[str] = (),
) -> ChangeSet:
    """The change that brings ``live`` to ``planned``, touching only mailstack's records.

    ``live`` maps each name of ``names_to_read`` to every record found there (a name
    absent from the mapping holds nothing). ``owned`` are the records mailstack wrote
    before; ``adopt`` maps a planned record's key to the live value the user hands over
    (``mailstack:dns.adopt``). ``allow_delete`` false refuses (as a conflict) deleting the
    last mail-critical record of its kind at a name (``mailstack.rules.protection``).
    ``compare_ttl`` false ignores TTLs (answers from a cache count down).
    """
    planned = sorted(set(planned), key=order_key)
    owned = list(owned)
    owner = _Owner(
        frozenset(identity(r) for r in owned),
        frozenset((r.name, r.type, coexistence.role(r)) for r in owned),
        adopt or {},
        allow_delete,
        compare_ttl,
    )
    changes: list[Change] = []
    for name in names_to_read(planned, owned, extra_names):
        at_name = [r for r in live.get(name, ()) if r.type not in UNTRACKED]
        changes += _at_name(name, [p for p in planned if p.name == name], at_name, owner)
    return ChangeSet(tuple(sorted(changes, key=_sort_key)))


def _sort_key(change: Change) -> tuple[str, str, int, str]:
    record = change.planned or change.live
    return (change.name, change.type, _RANK[change.action], record.value if record else "")


def _conflict(planned: Record | None, live: Record, text: str) -> Change:
    return Change(Action.CONFLICT, live.name, live.type, planned, live, note=text)


def _ways_out(planned: Record, live: Record) -> str:
    return (
        f"Ways out: declare it, so mailstack replaces it — mailstack:dns.adopt {{{planned.key}: {live.value!r}}} "
        "(RFC 2136; on Cloudflare the record's id, see `mailstack adopt`) —, or remove it from the zone; then run again"
    )


def _clash_note(planned: Record, live: Record) -> str:
    return (
        f"{live.name} {live.type} {live.value!r} is not mailstack's and cannot stay beside the planned "
        f"{planned.type} {planned.value!r}: {coexistence.rule(planned, live)}. {_ways_out(planned, live)}"
    )


def _at_name(name: str, planned: list[Record], live: list[Record], owner: _Owner) -> list[Change]:
    """Decisions at one name: the CNAME rule first (it owns the whole name), then per type."""
    cnames = [r for r in live if r.type == "CNAME"]
    planned_cname = next((p for p in planned if p.type == "CNAME"), None)
    if planned_cname is not None:
        return _cname_name(planned_cname, live, owner, planned)
    changes: list[Change] = []
    foreign = [c for c in cnames if not owner.owns(c)]
    for cname in cnames:
        if owner.owns(cname):
            changes.append(_delete(cname, planned, owner))
    if foreign and planned:
        for record in planned:
            changes.append(_conflict(record, foreign[0], (
                f"{name} is a CNAME to {foreign[0].content} that is not mailstack's, and records cannot sit beside "
                f"it ({coexistence.EXCLUSIVE['cname']}), so {record.type} {record.value!r} cannot be added. "
                f"Ways out: remove the CNAME from the zone, or stop planning records at {name}; then run again")))
        return changes
    changes += [Change(Action.UNMANAGED, c.name, c.type, live=c) for c in foreign]
    for rdtype in sorted({p.type for p in planned} | {r.type for r in live if r.type != "CNAME"}):
        changes += _in_set([p for p in planned if p.type == rdtype], [r for r in live if r.type == rdtype], owner, planned)
    return changes


def _cname_name(cname: Record, live: list[Record], owner: _Owner, planned: list[Record]) -> list[Change]:
    """A planned CNAME: the name must hold nothing but it (or records of mailstack's, which go)."""
    changes: list[Change] = []
    same = next((r for r in live if r.type == "CNAME" and r.content == cname.content), None)
    replaced: Record | None = None
    for record in live:
        if record is same:
            continue
        if owner.owns(record) and record.type == "CNAME" and replaced is None:
            replaced = record
        elif owner.owns(record):
            changes.append(_delete(record, planned, owner))
        elif record.type == "CNAME" and owner.adopted(cname, record) and replaced is None:
            replaced = record
        else:
            changes.append(_conflict(cname, record, _clash_note(cname, record) if record.type == "CNAME" else (
                f"{record.name} holds {record.type} {record.value!r}, which is not mailstack's, and the planned CNAME to "
                f"{cname.content} cannot sit beside it ({coexistence.EXCLUSIVE['cname']}). Ways out: remove "
                f"{record.type} {record.value!r} from the zone, or plan no CNAME at {record.name}; then run again")))
    if any(c.action is Action.CONFLICT for c in changes):
        return changes
    if same is not None:
        changes.append(_kept(cname, same, owner, cname.ttl))
    elif replaced is not None:
        changes.append(Change(Action.UPDATE, cname.name, "CNAME", cname, replaced, cname.ttl))
    else:
        changes.append(Change(Action.CREATE, cname.name, "CNAME", cname, ttl=cname.ttl))
    return changes


def _kept(planned: Record, live: Record, owner: _Owner, ttl: int) -> Change:
    """A planned record that is live: same (or adopted), or a TTL update."""
    if owner.compare_ttl and live.ttl != ttl:
        return Change(Action.UPDATE, planned.name, planned.type, planned, live, ttl, f"TTL {live.ttl} → {ttl}")
    action = Action.SAME if owner.owns(live) else Action.ADOPT
    return Change(action, planned.name, planned.type, planned, live, ttl)


def _delete(record: Record, planned_at_name: list[Record], owner: _Owner) -> Change:
    """Delete a record of mailstack's, unless it is the last mail-critical one of its kind."""
    purpose = protection.mail_purpose(record)
    kept = {protection.mail_purpose(p) for p in planned_at_name}
    if not owner.allow_delete and purpose in protection.PROTECTED_PURPOSES and purpose not in kept:
        return _conflict(None, record, (
            f"{record.name} {record.type} {record.value!r} is mailstack's and the plan no longer has a {purpose} "
            "record there; deleting a mail-critical record needs mailstack:dns.allowDelete: true (docs/ci-gate.md). "
            "Ways out: keep declaring it, or set allowDelete for this change; then run again"))
    return Change(Action.DELETE, record.name, record.type, live=record)


def _in_set(planned: list[Record], live: list[Record], owner: _Owner, planned_at_name: list[Record]) -> list[Change]:
    """Decisions inside one record set (name, type)."""
    changes: list[Change] = []
    used: list[Record] = []
    pairs: list[tuple[Record, Record]] = []

    def free() -> list[Record]:
        return [r for r in live if not any(r is u for u in used)]

    waiting: list[Record] = []
    for record in planned:
        match = None if record.needs_gateway_key else next((r for r in free() if identity(r) == identity(record)), None)
        if match is None:
            waiting.append(record)
        else:
            pairs.append((record, match))
            used.append(match)
    decided: list[tuple[Action, Record, Record | None, str]] = []
    for record in waiting:
        if record.needs_gateway_key:
            keys = [r for r in free() if coexistence.role(r) == coexistence.role(record)]
            ours = next((r for r in keys if owner.owns_role(r) or owner.adopted(record, r)), None)
            if ours is not None:
                decided.append((Action.SAME, record, ours, "content not compared: the gateway's key is not known here"))
                used.append(ours)
            elif keys:
                changes.append(_conflict(record, keys[0], (
                    f"{keys[0].name} TXT: a DKIM key that is not mailstack's is live at the selector mailstack's generated "
                    f"key goes to ({coexistence.EXCLUSIVE['dkim']}). If it is the gateway's key from an earlier run, pass "
                    f"--dkim-public-key or --owned. {_ways_out(record, keys[0])}")))
                used.append(keys[0])
            else:
                decided.append((Action.CREATE, record, None, ""))
            continue
        rivals = [r for r in free() if coexistence.clash(record, r) or owner.adopted(record, r)]
        replaceable = [r for r in rivals if owner.owns_role(r) or owner.owns(r) or owner.adopted(record, r)]
        foreign = [r for r in rivals if not any(r is x for x in replaceable)]
        used += rivals
        if foreign:
            changes += [_conflict(record, r, _clash_note(record, r)) for r in foreign]
        elif replaceable:
            decided.append((Action.UPDATE, record, replaceable[0], ""))
            changes += [_delete(r, planned_at_name, owner) for r in replaceable[1:]]
        else:
            decided.append((Action.CREATE, record, None, ""))
    for record in free():
        if owner.owns(record):
            changes.append(_delete(record, planned_at_name, owner))
        elif any(coexistence.clash(p, record) for p in planned):
            rival = next(p for p in planned if coexistence.clash(p, record))
            changes.append(_conflict(rival, record, _clash_note(rival, record)))
        else:
            note = f"not mailstack's: left alone; it receives mail for {record.name} too" if record.type == "MX" else ""
            if owner.owns_role(record) and not any(coexistence.role(p) == coexistence.role(record) for p in planned):
                note = "was mailstack's and changed outside mailstack since: left alone"
            changes.append(Change(Action.UNMANAGED, record.name, record.type, live=record, note=note))
    # Someone else's records stay in this set: a write keeps the set's TTL (theirs).
    shared = any(c.action in (Action.UNMANAGED, Action.CONFLICT) for c in changes)
    ttl = live[0].ttl if shared and live else min((p.ttl for p in planned), default=None)
    note = f"TTL {ttl} of the existing set kept (RFC 2181 §5.2: one TTL per set)" if shared and planned and any(p.ttl != ttl for p in planned) else ""
    for record, match in pairs:
        if shared or ttl is None:
            action = Action.SAME if owner.owns(match) else Action.ADOPT
            changes.append(Change(action, record.name, record.type, record, match, ttl))
        else:
            changes.append(_kept(record, match, owner, ttl))
    for action, record, old, text in decided:
        changes.append(Change(action, record.name, record.type, record, old, ttl, text or (note if action in WRITES else "")))
    return changes
