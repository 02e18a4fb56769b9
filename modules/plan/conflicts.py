"""Rules a record set breaks as a whole: two SPF records at a name, a CNAME beside
other data, SPF over budget, two values where one is allowed, MX/CNAME targets that
are addresses or aliases. The plan refuses such a set before anything is published;
the policy pack applies the same function to what a change registers.

Each problem carries, as data, the declaration key a user changes to fix it (from the
``origin`` of the records involved), so configuration errors name that key without
reading the message text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mailstack.core import names
from mailstack.core.record import KeyPath, Record
from mailstack.rules import mx, spf

#: The kinds of problem ``find`` reports; the policy pack selects some of them.
KINDS = ("spf-count", "cname-exclusive", "spf-syntax", "spf-budget", "duplicate", "mx-target", "cname-target")

#: Which record's key a problem is reported at when several records meet at a name:
#: the more deliberate choice first (a selector name, the inbound setup) before the
#: records every sender contributes to.
_BLAME_ORDER = ("dkim", "inbound", "mtaSts", "tlsRpt", "dmarc", "gateways", "outbound", "aliasDomains", "domain")


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: ``subject`` (the name) followed by ``text`` is the message;
    ``path`` is the declaration key to change."""

    kind: str
    subject: str
    text: str
    path: KeyPath = ("domain",)

    @property
    def message(self) -> str:
        return f"{self.subject}{self.text}"

    def __str__(self) -> str:
        return self.message


def _blame(records: Iterable[Record]) -> KeyPath:
    origins = [r.origin for r in records if r.origin]
    if not origins:
        return ("domain",)

    def rank(origin: KeyPath) -> int:
        head = str(origin[0])
        return _BLAME_ORDER.index(head) if head in _BLAME_ORDER else len(_BLAME_ORDER)

    return min(origins, key=rank)


def find(records: Iterable[Record], kinds: Iterable[str] | None = None) -> list[Problem]:
    """Every rule the set breaks (only those of ``kinds`` when given)."""
    wanted = set(KINDS if kinds is None else kinds)
    return [problem for problem in _problems(records) if problem.kind in wanted]


def conflicts(records: Iterable[Record], kinds: Iterable[str] | None = None) -> list[str]:
    """The messages of ``find``: what the policy pack reports per policy."""
    return [problem.message for problem in find(records, kinds)]


def _problems(records: Iterable[Record]) -> list[Problem]:
    by_name: dict[str, list[Record]] = defaultdict(list)
    for record in sorted(set(records)):  # the same record planned twice is one record
        by_name[record.name].append(record)
    problems: list[Problem] = []
    for name, at_name in sorted(by_name.items()):
        spf_records = [r for r in at_name if r.type == "TXT" and spf.is_spf(r.content)]
        if len(spf_records) > 1:
            problems.append(Problem("spf-count", name, f" would have {len(spf_records)} SPF records; RFC 7208 §3.2 allows one", _blame(spf_records)))
        if any(r.type == "CNAME" for r in at_name) and len(at_name) > 1:
            others = ", ".join(sorted({r.type for r in at_name}))
            problems.append(Problem("cname-exclusive", name, f" has a CNAME beside other records ({others}); RFC 1034 §3.6.2 forbids it", _blame(at_name)))
        for record in spf_records:
            try:
                problems += [Problem("spf-budget", name, f": {text}", _blame([record])) for text in spf.budget_problems(record.content)]
            except spf.SpfSyntaxError as err:  # only records not built by the plan (policy pack)
                problems.append(Problem("spf-syntax", name, f": SPF record does not parse: {err}", _blame([record])))
    by_key: dict[str, list[Record]] = defaultdict(list)
    for record in (r for rs in by_name.values() for r in rs):
        by_key[record.key].append(record)
    for _, same in sorted(by_key.items()):
        if len(same) > 1:
            values = ", ".join(repr(r.content) for r in same)
            problems.append(Problem("duplicate", same[0].name, f" would have {len(same)} different {same[0].type} records ({values})", _blame(same)))
    cname_names = {name for name, at_name in by_name.items() if any(r.type == "CNAME" for r in at_name)}
    for record in (r for rs in by_name.values() for r in rs):
        if record.type == "MX":
            problem = mx.target_problem(record.content, is_alias=record.content in cname_names)
            if problem:
                problems.append(Problem("mx-target", record.name, f": {problem}", _blame([record])))
        if record.type == "CNAME" and names.is_ip(record.content):
            problems.append(Problem("cname-target", record.name, f": CNAME target {record.content} is an IP address", _blame([record])))
    return problems
