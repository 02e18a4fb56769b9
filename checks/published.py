"""Declared vs published: the planned records (``modules.plan.plan``) against live DNS.

Split for reuse (``mailstack diff`` calls the same two functions):

- ``fetch(planned, resolver)`` does the I/O: for every (name, type) the plan touches it
  asks the resolver and returns ``Observed`` values — the live records as
  ``modules.model.Record``, or the ``DnsError`` that prevented knowing them;
- ``compare(planned, observed, gateway_key_known=...)`` is pure: it returns one
  ``RecordDiff`` per planned record and per unexpected live record at a planned name
  that matters for mail (a second SPF, a stale DKIM key, an extra MX).

Live records are normalised the way ``Record`` is (TXT concatenated and unquoted,
targets without trailing dot, IPv6 compressed), so comparing is string equality.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from modules import dkim, spf
from modules.model import Record

from checks.resolver import Answer, DnsError, Resolver


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


def to_records(answer: Answer, type_: str) -> tuple[Record, ...]:
    """Live rdata as Records (content normalised like the plan's)."""
    name = answer.name
    if type_ == "TXT":
        return tuple(Record(name, "TXT", text, answer.ttl) for text in answer.texts())
    if type_ == "MX":
        return tuple(Record(name, "MX", host, answer.ttl, pref) for pref, host in answer.mx())
    if type_ in ("A", "AAAA"):
        return tuple(Record(name, type_, a, answer.ttl) for a in answer.addresses())
    if type_ in ("CNAME", "NS", "PTR"):
        return tuple(Record(name, type_, t, answer.ttl) for t in answer.targets())
    return tuple(Record(name, type_, r.to_text(), answer.ttl) for r in answer.records)


def fetch_one(resolver: Resolver, name: str, type_: str) -> Observed:
    """The live records of one name and type (CNAMEs not followed), or the error."""
    try:
        if type_ == "CNAME":
            answer = resolver.query(name, "CNAME", follow=False)
            return Observed(name, type_, to_records(answer, "CNAME"))
        answer = resolver.query(name, type_, follow=False)
        if answer.cnames:
            return Observed(name, type_, (), cname=answer.cnames[0])
        return Observed(name, type_, to_records(answer, type_))
    except DnsError as err:
        return Observed(name, type_, error=err)


def fetch(planned: Iterable[Record], resolver: Resolver) -> dict[tuple[str, str], Observed]:
    """Observe every (name, type) the plan declares, each once."""
    keys = sorted({(r.name, r.type) for r in planned})
    return {key: fetch_one(resolver, *key) for key in keys}


def _same_purpose(declared: Record, live: Record) -> bool:
    """True when a live TXT record plays the declared record's role (both SPF, both DKIM...)."""
    if declared.type != "TXT":
        return True
    if declared.purpose == "spf" or spf.is_spf(declared.content):
        return spf.is_spf(live.content)
    prefix = declared.content.split(";", 1)[0].strip().lower()
    if declared.purpose == "dkim":
        return "p=" in live.content or live.content.lower().startswith("v=dkim1")
    return live.content.split(";", 1)[0].strip().lower() == prefix


def _key_record_ok(content: str) -> bool:
    try:
        parsed = dkim.parse(content)
    except dkim.DkimKeyError:
        return False
    return not parsed.revoked


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
        keys = [r for r in live if r not in matched and _key_record_ok(r.content)]
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
