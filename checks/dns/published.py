"""Declared vs published: the planned records (``mailstack.plan``) against live DNS.

Split for reuse (``mailstack diff`` calls the same two functions):

- ``observe(planned, resolver)`` does the I/O: for every (name, type) the plan touches it
  asks the async resolver — all at once — and returns ``Observed`` values, the live
  records as ``mailstack.core.record.Record`` (``zonefile.from_rdata``), or the
  ``DnsError`` that prevented knowing them; ``fetch`` is the same for blocking callers;
- ``compare(planned, observed, gateway_key_known=...)`` is pure: it returns one
  ``RecordDiff`` per planned record and per unexpected live record at a planned name
  that matters for mail (a second SPF, a stale DKIM key, an extra MX).

Live records are normalised the way ``Record`` is (TXT concatenated and unquoted,
targets without trailing dot, IPv6 compressed), so comparing is string equality.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mailstack.checks.dns import loop
from mailstack.checks.dns.answer import Answer, DnsError
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.resolver import Resolver
from mailstack.core import zonefile
from mailstack.core.record import Record
from mailstack.rules import dkim, spf


class Change(StrEnum):
    """How a record's live state relates to its declaration."""

    SAME = "same"  # live with the declared content
    MISSING = "missing"  # not live at all
    DIFFERENT = "different"  # a record of that name and purpose with other content
    EXTRA = "extra"  # live beside the declared one, and conflicting (2nd SPF, stale DKIM)
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
    """One line of the difference; ``declared`` is None for an EXTRA record."""

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


async def observe(planned: Iterable[Record], resolver: AsyncResolver) -> dict[tuple[str, str], Observed]:
    """Observe every (name, type) the plan declares, each once, all at once."""
    keys = sorted({(r.name, r.type) for r in planned})
    found = await asyncio.gather(*(observe_one(resolver, *key) for key in keys))
    return dict(zip(keys, found))


def fetch_one(resolver: Resolver, name: str, type_: str) -> Observed:
    """``observe_one`` for blocking callers."""
    return loop.run(observe_one(resolver.aio, name, type_))


def fetch_each(resolver: Resolver, keys: Sequence[tuple[str, str]]) -> list[Observed]:
    """``observe_one`` for many (name, type) at once, for blocking callers, in order."""
    async def each() -> list[Observed]:
        return list(await asyncio.gather(*(observe_one(resolver.aio, *key) for key in keys)))
    return loop.run(each())


def fetch(planned: Iterable[Record], resolver: Resolver) -> dict[tuple[str, str], Observed]:
    """``observe`` for blocking callers (``mailstack diff``)."""
    return loop.run(observe(planned, resolver.aio))


def _same_purpose(declared: Record, live: Record) -> bool:
    """True when a live TXT record plays the declared record's role (both SPF, both DKIM...)."""
    if declared.type != "TXT":
        return True
    if declared.purpose == "spf" or spf.is_spf(declared.content):
        return spf.is_spf(live.content)
    prefix = declared.content.split(";", 1)[0].strip().lower()
    if declared.purpose == "dkim":
        return dkim.is_key_record(live.content)
    return live.content.split(";", 1)[0].strip().lower() == prefix


def compare(
    planned: Sequence[Record], observed: dict[tuple[str, str], Observed], *, gateway_key_known: bool = False
) -> list[RecordDiff]:
    """The difference between the plan and live DNS, in plan order.

    Records with ``needs_gateway_key`` (the gateway's DKIM key is generated by Pulumi)
    compare by presence and parse unless ``gateway_key_known`` (the plan was made with
    the key, ``--dkim-public-key``).
    """
    diffs: list[RecordDiff] = []
    by_key: dict[tuple[str, str], list[Record]] = {}
    for record in planned:
        by_key.setdefault((record.name, record.type), []).append(record)
    for key, declared_records in by_key.items():
        seen = observed.get(key, Observed(*key))
        if seen.error is not None:
            diffs += [RecordDiff(Change.UNKNOWN, r.name, r.type, r, (), str(seen.error)) for r in declared_records]
            continue
        if seen.cname is not None:
            note = f"{key[0]} is a CNAME to {seen.cname}, which hides every other record there"
            diffs += [RecordDiff(Change.DIFFERENT, r.name, r.type, r, (), note) for r in declared_records]
            continue
        live = list(seen.records)
        matched: set[Record] = set()
        for declared in declared_records:
            diffs.append(_compare_one(declared, live, matched, gateway_key_known))
        for record in live:
            if record in matched:
                continue
            if any(_same_purpose(d, record) for d in declared_records) or key[1] in ("MX", "CNAME"):
                what = "a second SPF record" if spf.is_spf(record.content) else "a conflicting record"
                diffs.append(RecordDiff(Change.EXTRA, record.name, record.type, None, (record,), what))
    return diffs


def _compare_one(declared: Record, live: list[Record], matched: set[Record], key_known: bool) -> RecordDiff:
    name, type_ = declared.name, declared.type
    same = [r for r in live if r.content == declared.content and r.priority == declared.priority]
    if same:
        matched.add(same[0])
        return RecordDiff(Change.SAME, name, type_, declared, (same[0],))
    if declared.needs_gateway_key and not key_known:
        keys = [r for r in live if r not in matched and dkim.is_live_key(r.content)]
        if keys:
            matched.add(keys[0])
            return RecordDiff(Change.PRESENT, name, type_, declared, (keys[0],), "a valid DKIM key is live; its content is not compared without --dkim-public-key")
    rivals = [r for r in live if r not in matched and _same_purpose(declared, r)]
    if type_ == "MX":
        rivals = [r for r in live if r not in matched and (r.content == declared.content or r.priority == declared.priority)][:1] or []
    if rivals:
        matched.add(rivals[0])
        return RecordDiff(Change.DIFFERENT, name, type_, declared, (rivals[0],))
    return RecordDiff(Change.MISSING, name, type_, declared, ())
