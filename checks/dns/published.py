"""Declared vs published: the planned records (``mailstack.plan``) against live DNS.

Split for reuse (``mailstack diff`` calls the same two functions):

- ``observe(planned, resolver)`` does the I/O: for every (name, type) the plan touches it
  asks the async resolver — all at once — and returns ``Observed`` values, the live
  records as ``mailstack.core.record.Record`` (``zonefile.from_rdata``), or the
  ``DnsError`` that prevented knowing them; ``fetch`` is the same for blocking callers;
- ``compare(planned, observed, gateway_key_known=...)`` is pure: the change calculator
  (``mailstack.plan.changes``) decides, and it returns one ``RecordDiff`` per planned
  record and per other live record at a planned name: conflicting (a second SPF) or
  mailstack's and no longer declared (``extra``), or someone else's (``unmanaged``).

Live records are normalised the way ``Record`` is (TXT concatenated and unquoted,
targets without trailing dot, IPv6 compressed), so comparing is string equality.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from mailstack.checks.dns import loop
from mailstack.checks.dns.answer import Answer, DnsError
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.resolver import Resolver
from mailstack.core import zonefile
from mailstack.core.record import Record
from mailstack.plan import changes
from mailstack.plan.changes import Action
from mailstack.rules import dkim, spf


class Change(StrEnum):
    """How a record's live state relates to its declaration."""

    SAME = "same"  # live with the declared content
    MISSING = "missing"  # not live at all
    DIFFERENT = "different"  # a record of that name and purpose with other content
    EXTRA = "extra"  # conflicting with the plan (a 2nd SPF), or mailstack's and no longer declared
    UNMANAGED = "unmanaged"  # someone else's record beside the declared ones: shown, never drift
    UNKNOWN = "unknown"  # the query failed; see ``error``
    PRESENT = "present"  # content not known (gateway DKIM key) but a valid record is live


@dataclass(frozen=True, slots=True)
class Observed:
    """What DNS serves at one (name, type): records, or the error that hid them.

    ``cname`` is set when the name turned out to be an alias (a CNAME where a TXT or MX
    was expected), which replaces every other record at that name.
    """

    name: str
    type: str
    records: tuple[Record, ...] = ()
    cname: str | None = None
    error: DnsError | None = None


@dataclass(frozen=True, slots=True)
class RecordDiff:
    """One line of the difference; ``declared`` is None for an EXTRA or UNMANAGED record."""

    change: Change
    name: str
    type: str
    declared: Record | None
    live: tuple[Record, ...]
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.change in (Change.SAME, Change.PRESENT)


def to_records(answer: Answer) -> tuple[Record, ...]:
    """Live rdata as Records (content normalised like the plan's)."""
    return tuple(zonefile.from_rdata(answer.name, answer.ttl, rdata) for rdata in answer.records)


async def observe_one(resolver: AsyncResolver, name: str, type_: str) -> Observed:
    """The live records of one name and type (CNAMEs not followed), or the error."""
    try:
        answer = await resolver.query(name, type_, follow=False)
    except DnsError as err:
        return Observed(name, type_, error=err)
    if type_ != "CNAME" and answer.cnames:
        return Observed(name, type_, (), cname=answer.cnames[0])
    return Observed(name, type_, to_records(answer))


async def observe(planned: Iterable[Record], resolver: AsyncResolver, extra: Iterable[tuple[str, str]] = ()) -> dict[tuple[str, str], Observed]:
    """Observe every (name, type) the plan declares, and ``extra`` ones, each once, all at once."""
    keys = sorted({(r.name, r.type) for r in planned} | set(extra))
    found = await asyncio.gather(*(observe_one(resolver, *key) for key in keys))
    return dict(zip(keys, found))


def fetch_one(resolver: Resolver, name: str, type_: str) -> Observed:
    """``observe_one`` for blocking callers."""
    return loop.run(observe_one(resolver.aio, name, type_))


def fetch(planned: Iterable[Record], resolver: Resolver, extra: Iterable[tuple[str, str]] = ()) -> dict[tuple[str, str], Observed]:
    """``observe`` for blocking callers (``mailstack diff``, ``mailstack plan``)."""
    return loop.run(observe(planned, resolver.aio, extra))


def live_records(observed: Mapping[tuple[str, str], Observed]) -> dict[str, list[Record]]:
    """What was seen, by name, for the change calculator (a CNAME seen where another type
    was asked is a record at the name; failed queries contribute nothing)."""
    found: dict[str, list[Record]] = {}
    for (name, _), seen in sorted(observed.items()):
        if seen.error is not None:
            continue
        at_name = found.setdefault(name, [])
        if seen.cname is not None:
            alias = Record(name, "CNAME", seen.cname, 0)
            if alias not in at_name:
                at_name.append(alias)
        at_name += [r for r in seen.records if r not in at_name]
    return found


def compare(
    planned: Sequence[Record],
    observed: Mapping[tuple[str, str], Observed],
    *,
    gateway_key_known: bool = False,
    owned: Iterable[Record] = (),
    extra_names: Iterable[str] = (),
) -> list[RecordDiff]:
    """The difference between the plan and live DNS, in plan order.

    The decision is the change calculator's (``mailstack.plan.changes``, TTLs ignored:
    caches count them down), read as drift: a record to create is missing, one to
    update is different, one of mailstack's to delete (``owned``, e.g. a previous
    deployment's records) is extra, a record conflicting with a planned one (a second
    SPF) is extra, and a record mailstack does not own beside the planned ones is
    unmanaged — shown, never drift. Records with ``needs_gateway_key`` (the gateway's
    DKIM key is generated by Pulumi) compare by presence and parse unless
    ``gateway_key_known`` (the plan was made with the key, ``--dkim-public-key``).
    """
    errors = {key: seen.error for key, seen in observed.items() if seen.error is not None}
    extra_names = list(extra_names)
    known = [r for r in planned if (r.name, r.type) not in errors]
    if gateway_key_known:
        known = [replace(r, needs_gateway_key=False) for r in known]
    # A key whose content is not known here is compared by presence: take it as ours.
    pending = [r for r in known if r.needs_gateway_key]
    decided = changes.calculate(
        known, live_records(observed), [*owned, *pending], compare_ttl=False,
        extra_names=[n for n in extra_names if not any(k[0] == n for k in errors)],
    )
    by_key: dict[tuple[str, str], list[RecordDiff]] = {}
    for diff in _diffs(decided):
        by_key.setdefault((diff.name, diff.type), []).append(diff)
    result: list[RecordDiff] = []
    for key in dict.fromkeys([(r.name, r.type) for r in planned] + sorted(by_key)):
        if key in errors:
            result += [RecordDiff(Change.UNKNOWN, r.name, r.type, r, (), str(errors[key])) for r in planned if (r.name, r.type) == key]
        result += sorted(by_key.pop(key, []), key=lambda d: d.declared is None)
    planned_keys = {(r.name, r.type) for r in planned}
    result += [RecordDiff(Change.UNKNOWN, key[0], key[1], None, (), str(error))
               for key, error in sorted(errors.items()) if key not in planned_keys and key[0] in extra_names]
    return result


def _diffs(decided: changes.ChangeSet) -> list[RecordDiff]:
    """The calculator's decisions as drift, one RecordDiff each."""
    kept = {id(c.planned) for c in decided.of(Action.SAME, Action.ADOPT) if c.planned is not None}
    rivals: set[int] = set()
    diffs: list[RecordDiff] = []
    for change in decided.changes:
        planned, live = change.planned, change.live
        lives = (live,) if live is not None else ()
        if change.action in (Action.SAME, Action.ADOPT):
            assert planned is not None and live is not None
            if planned.needs_gateway_key:
                valid = dkim.is_live_key(live.content)
                note = "a valid DKIM key is live; its content is not compared without --dkim-public-key" if valid else "the key live at the selector is not usable (revoked or invalid)"
                diffs.append(RecordDiff(Change.PRESENT if valid else Change.DIFFERENT, change.name, change.type, planned, lives, note))
            else:
                diffs.append(RecordDiff(Change.SAME, change.name, change.type, planned, lives))
        elif change.action is Action.CREATE:
            diffs.append(RecordDiff(Change.MISSING, change.name, change.type, planned, ()))
        elif change.action is Action.UPDATE:
            diffs.append(RecordDiff(Change.DIFFERENT, change.name, change.type, planned, lives))
        elif change.action is Action.DELETE:
            diffs.append(RecordDiff(Change.EXTRA, change.name, change.type, None, lives, "mailstack's, and no longer declared"))
        elif change.action is Action.CONFLICT:
            assert live is not None
            if planned is not None and live.type == "CNAME" and planned.type != "CNAME":
                note = f"{change.name} is a CNAME to {live.content}, which hides every other record there"
                diffs.append(RecordDiff(Change.DIFFERENT, planned.name, planned.type, planned, (), note))
            elif planned is not None and id(planned) not in kept and id(planned) not in rivals:
                rivals.add(id(planned))
                diffs.append(RecordDiff(Change.DIFFERENT, change.name, change.type, planned, lives, "not written by mailstack"))
            else:
                what = "a second SPF record" if spf.is_spf(live.content) else "a conflicting record"
                diffs.append(RecordDiff(Change.EXTRA, change.name, change.type, None, lives, what))
        elif change.action is Action.UNMANAGED:
            diffs.append(RecordDiff(Change.UNMANAGED, change.name, change.type, None, lives, change.note or "not mailstack's: left alone"))
    return _pair_moved_mx(diffs)


def _pair_moved_mx(diffs: list[RecordDiff]) -> list[RecordDiff]:
    """A missing MX and an unmanaged MX to the same host at another priority are one
    record with another priority: report it as different."""
    result = list(diffs)
    for missing in [d for d in diffs if d.change is Change.MISSING and d.type == "MX"]:
        assert missing.declared is not None
        twin = next((d for d in result if d.change is Change.UNMANAGED and d.type == "MX" and d.name == missing.name
                     and d.live and d.live[0].content == missing.declared.content), None)
        if twin is not None:
            result[result.index(missing)] = RecordDiff(Change.DIFFERENT, missing.name, "MX", missing.declared, twin.live)
            result.remove(twin)
    return result


#: Types asked at a name where a CNAME is planned, to see what it would sit beside.
BESIDE_CNAME = ("A", "AAAA", "MX", "TXT")


def fetch_names(resolver: Resolver, planned: Iterable[Record], owned: Iterable[Record] = ()) -> tuple[dict[str, list[Record]], list[DnsError]]:
    """What plain DNS shows at the names a change touches (``mailstack plan --nameserver``):
    the records by name, and the queries that failed (an incomplete read: no plan)."""
    planned, owned = list(planned), list(owned)
    keys = {(r.name, r.type) for r in [*planned, *owned]}
    keys |= {(r.name, t) for r in planned if r.type == "CNAME" for t in BESIDE_CNAME}
    observed = fetch([], resolver, keys)
    return live_records(observed), [seen.error for seen in observed.values() if seen.error is not None]
