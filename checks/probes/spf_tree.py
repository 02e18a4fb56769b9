"""SPF observed recursively: fetch the record tree once, evaluate it without I/O.

``fetch_tree`` follows include and redirect through the resolver and records, for
every record, its terms and what each DNS-querying term found (void or not); the
terms of one record are asked at once, so the fetch takes as many round trips as the
tree is deep, not as it has terms. The evaluation functions only read that tree, so
fixtures can build trees by hand.

Counting follows RFC 7208 §4.6.4: include, a, mx, ptr, exists and redirect each count
one lookup, recursively through include/redirect; a query that returns no records or
NXDOMAIN is a void lookup. ``a``/``mx``/``exists`` are resolved against the record's
own domain. A term whose domain-spec holds macros (RFC 7208 §7, validated by
``mailstack.rules.spf``) names a different domain for each message: it is counted as
the one lookup it is and marked ``macro``, but neither queried nor followed (an
``include:%{d}._spf.example`` may need more lookups when a message arrives).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.core import names
from mailstack.rules import spf

MAX_DEPTH = 12


@dataclass(frozen=True, slots=True)
class TermResult:
    """One DNS-querying term of a record and what its lookups found."""

    term: str
    lookups: int  # this term plus everything below it (include/redirect)
    void: bool  # the term's own query found nothing
    voids_below: int  # void lookups below it
    child: SpfRecord | None = None
    error: str | None = None  # the term's own query failed: its void status is unknown
    mx_hosts: int = 0  # an ``mx`` term: the MX records it names (at most 10, §4.6.4)
    macro: bool = False  # the domain-spec holds macros: counted once, not followed


@dataclass(frozen=True, slots=True)
class SpfRecord:
    """The SPF record(s) found at one domain and their evaluated terms."""

    domain: str
    records: tuple[str, ...]  # every SPF record at the name (more than one is an error)
    terms: tuple[TermResult, ...] = ()
    syntax_error: str | None = None
    loop: str | None = None  # the domain that was included again on this path
    dns_error: str | None = None

    @property
    def record(self) -> str | None:
        return self.records[0] if len(self.records) == 1 else None

    @property
    def lookups(self) -> int:
        return sum(t.lookups for t in self.terms)

    @property
    def voids(self) -> int:
        return sum(int(t.void) + t.voids_below for t in self.terms)

    def macro_terms(self) -> list[str]:
        """Terms anywhere in the tree whose domain-spec holds macros (not followed)."""
        found = [t.term for t in self.terms if t.macro]
        for t in self.terms:
            if t.child is not None:
                found += t.child.macro_terms()
        return found

    def unfetched_includes(self) -> list[str]:
        """include/redirect targets anywhere in the tree that could not be fetched: what
        they include (and whether it loops) is unknown."""
        found: list[str] = []
        for t in self.terms:
            if t.child is None:
                continue
            if t.child.dns_error:
                found.append(f"{t.term}: {t.child.dns_error}")
            found += t.child.unfetched_includes()
        return found

    def per_term(self) -> list[tuple[str, int]]:
        """(term, lookups it causes) for the terms of this record that query DNS."""
        return [(t.term, t.lookups) for t in self.terms]

    def loops(self) -> list[str]:
        """Every include/redirect loop found anywhere in the tree."""
        found = [self.loop] if self.loop else []
        for t in self.terms:
            if t.child:
                found += t.child.loops()
        return found

    def mx_over_limit(self) -> list[str]:
        """``mx`` terms anywhere in the tree naming more than 10 MX records (permerror)."""
        found = [f"{t.term} names {t.mx_hosts} MX records" for t in self.terms if t.mx_hosts > spf.MX_ADDRESS_LIMIT]
        for t in self.terms:
            if t.child is not None:
                found += t.child.mx_over_limit()
        return found

    def dns_errors(self) -> list[str]:
        """Every query of the tree that failed: counts are lower bounds when any did."""
        found: list[str] = []
        for t in self.terms:
            if t.error:
                found.append(f"{t.term}: {t.error}")
            if t.child is not None:
                if t.child.dns_error:
                    found.append(f"{t.term}: {t.child.dns_error}")
                found += t.child.dns_errors()
        return found

    def problems_below(self) -> list[str]:
        """Problems of included records (missing, duplicate, syntax); DNS failures are
        in ``dns_errors`` and loops in ``loops``."""
        found: list[str] = []
        for t in self.terms:
            child = t.child
            if child is None:
                continue
            if child.dns_error or child.loop:
                pass
            elif not child.records:
                found.append(f"{t.term}: {child.domain} has no SPF record (permerror)")
            elif len(child.records) > 1:
                found.append(f"{t.term}: {child.domain} has {len(child.records)} SPF records (permerror)")
            elif child.syntax_error:
                found.append(f"{t.term}: {child.syntax_error}")
            found += child.problems_below()
        return found


def spf_records(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The TXT values at a name that are SPF records (RFC 7208 §4.5)."""
    return tuple(t for t in texts if spf.is_spf(t))


async def fetch_tree(resolver: AsyncResolver, domain: str) -> SpfRecord:
    """The SPF tree of ``domain``; DnsError for the top record propagates (undecidable),
    errors below are recorded in the tree (the check reports them as ``error``)."""
    texts = (await resolver.txt(domain)).texts()
    return await _walk(resolver, domain, spf_records(texts), (domain,), 0)


async def _walk(resolver: AsyncResolver, domain: str, records: tuple[str, ...], path: tuple[str, ...], depth: int) -> SpfRecord:
    if len(records) != 1:
        return SpfRecord(domain, records)
    try:
        terms = spf.parse(records[0])
    except spf.SpfSyntaxError as err:
        return SpfRecord(domain, records, syntax_error=str(err))
    results = await asyncio.gather(*(
        _term(resolver, domain, term, path, depth) for term in terms if term.queries_dns
    ))
    return SpfRecord(domain, records, tuple(results))


async def _term(resolver: AsyncResolver, domain: str, term: spf.Term, path: tuple[str, ...], depth: int) -> TermResult:
    text = str(term)
    if spf.has_macro(term.value):
        return TermResult(text, 1, False, 0, macro=True)
    target = names.normalize(term.value.split("/", 1)[0] or domain)
    if term.name in ("include", "redirect"):
        return await _follow(resolver, text, target, path, depth)
    void, error, mx_hosts = await _void(resolver, term.name, target)
    return TermResult(text, 1, void, 0, error=error, mx_hosts=mx_hosts)


async def _follow(resolver: AsyncResolver, text: str, target: str, path: tuple[str, ...], depth: int) -> TermResult:
    if target in path or depth >= MAX_DEPTH:
        child = SpfRecord(target, (), loop=" -> ".join([*path, target]))
        return TermResult(text, 1, False, 0, child)
    try:
        answer = await resolver.txt(target)
    except DnsError as err:
        return TermResult(text, 1, False, 0, SpfRecord(target, (), dns_error=str(err)))
    child = await _walk(resolver, target, spf_records(answer.texts()), (*path, target), depth + 1)
    return TermResult(text, 1 + child.lookups, answer.void, child.voids, child)


async def _void(resolver: AsyncResolver, mechanism: str, target: str) -> tuple[bool, str | None, int]:
    """(the mechanism's query returns nothing, the DNS error that kept us from knowing,
    the number of MX records an ``mx`` term names)."""
    try:
        if mechanism == "mx":
            answer = await resolver.query(target, "MX")
            return answer.void, None, len(answer.records)
        if mechanism == "ptr":
            return False, None, 0  # needs the connecting IP; counted, never void here
        a = await resolver.query(target, "A")
        if mechanism == "exists" or not a.void:
            return a.void, None, 0
        return (await resolver.query(target, "AAAA")).void, None, 0
    except DnsError as err:
        return False, str(err), 0


@dataclass(frozen=True, slots=True)
class Budget:
    """The evaluated lookup budget of a tree."""

    lookups: int
    voids: int
    per_term: list[tuple[str, int]] = field(default_factory=list)

    @property
    def over_lookups(self) -> bool:
        return self.lookups > spf.LOOKUP_LIMIT

    @property
    def over_voids(self) -> bool:
        return self.voids > spf.VOID_LIMIT

    def describe(self) -> str:
        return ", ".join(f"{term}={count}" for term, count in self.per_term) or "no DNS-querying terms"


def budget(tree: SpfRecord) -> Budget:
    """Lookup and void counts of a tree, with the per-term breakdown."""
    return Budget(tree.lookups, tree.voids, tree.per_term())
