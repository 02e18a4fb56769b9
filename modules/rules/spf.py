"""SPF (RFC 7208), written once: build the one record per name, parse it, count its
DNS-querying terms, and size it. The plan uses it before apply, the policy pack at
preview, the checks after apply (recursively, through ``checks``' resolver)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailstack.core.errors import RuleError, quote

#: RFC 7208 §4.6.4: at most 10 terms that cause DNS queries, recursively.
LOOKUP_LIMIT = 10
#: RFC 7208 §4.6.4: at most 2 "void" lookups (NXDOMAIN or no answer).
VOID_LIMIT = 2
#: RFC 7208 §4.6.4: an ``mx`` (or ``ptr``) term may name at most 10 hosts to look up.
MX_ADDRESS_LIMIT = 10
#: RFC 7208 §3.4: keep the answer within 512 bytes of UDP; 450 for the TXT itself is advised.
SIZE_ADVISED = 450
SIZE_LIMIT = 512

LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
MODIFIERS = frozenset({"redirect", "exp"})
ALL_QUALIFIERS = ("~all", "-all")

#: RFC 7208 §7.1: one macro-expand (``%{d}``, ``%{ir}``, ``%{l1r-}``, ``%%``, ``%_``, ``%-``).
_MACRO_EXPAND = r"%\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[.+,/_=-]*)\}|%%|%_|%-"
_MACRO_TOKEN = re.compile(rf"{_MACRO_EXPAND}|(?P<literal>[\x21-\x24\x26-\x7e])|(?P<bad>%.{{0,8}})", re.S)
#: RFC 7208 §7.2: the macro letters of a domain-spec; c, r and t only in explanations.
MACRO_LETTERS = frozenset("slodipvh")
EXPLANATION_LETTERS = frozenset("crt")
#: RFC 7208 §7.1 ``domain-end``: "." toplabel ["."], unless the spec ends with a macro.
_DOMAIN_END = re.compile(r"\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?$")
#: The mechanisms and modifiers whose value is a domain-spec (RFC 7208 §5, §6).
DOMAIN_SPEC_TERMS = frozenset({"include", "exists", "a", "mx", "ptr", "redirect", "exp"})


def has_macro(value: str) -> bool:
    """True when a term's value holds a macro (RFC 7208 §7): it is expanded per message,
    so the name it queries is not known before a message arrives."""
    return "%" in value


def check_macros(spec: str) -> None:
    """Validate a domain-spec holding macros against RFC 7208 §7.1 (macro-string
    domain-end): every ``%`` starts a valid macro-expand, the letter is one of
    s l o d i p v h (c, r, t only in explanation text, §7.2), a digit transformer is
    not 0 (§7.3), and the spec ends with a macro or a "." top label. SpfSyntaxError
    naming the bad part otherwise."""
    position = 0
    ends_with_macro = False
    while position < len(spec):
        token = _MACRO_TOKEN.match(spec, position)
        if token is None or token["bad"] is not None:
            bad = token["bad"] if token is not None else spec[position:position + 8]
            raise SpfSyntaxError(f"{quote(spec)}: {quote(bad)} is not a macro (RFC 7208 §7.1: %{{letter}}, %%, %_ or %-)")
        letter = token["letter"]
        if letter is not None:
            if letter.lower() in EXPLANATION_LETTERS:
                raise SpfSyntaxError(f"{quote(spec)}: macro %{{{letter}}} is allowed only in explanation text (RFC 7208 §7.2)")
            if letter.lower() not in MACRO_LETTERS:
                raise SpfSyntaxError(f"{quote(spec)}: %{{{letter}}} is not a macro letter (RFC 7208 §7.2: s l o d i p v h)")
            if token["digits"] and int(token["digits"]) == 0:
                raise SpfSyntaxError(f"{quote(spec)}: macro transformer 0 is not allowed (RFC 7208 §7.3)")
        ends_with_macro = token["literal"] is None
        position = token.end()
    if not ends_with_macro and not _DOMAIN_END.search(spec):
        raise SpfSyntaxError(f"{quote(spec)}: a domain-spec ends with a macro or a '.' and a top label (RFC 7208 §7.1)")


_TERM = re.compile(r"^(?P<qualifier>[+?~-]?)(?P<name>[a-z0-9]+)(?P<rest>[:/=].*)?$", re.I)
_MODIFIER = re.compile(r"^(?P<name>[a-z][a-z0-9_.-]*)=(?P<value>.*)$", re.I)


class SpfSyntaxError(RuleError):
    """An SPF term or record that does not follow RFC 7208 §4.6.1 / §5."""


@dataclass(frozen=True, slots=True)
class Term:
    """One parsed SPF term: a mechanism (with qualifier) or a modifier."""

    qualifier: str  # '+', '-', '~', '?' for mechanisms, '' for modifiers
    name: str  # 'include', 'ip4', 'redirect', ...
    value: str  # the part after ':' or '=', '' when absent (CIDR kept in value)
    modifier: bool = False

    @property
    def queries_dns(self) -> bool:
        """True for the terms RFC 7208 §4.6.4 counts against the 10-lookup limit: each
        counts one, whether its domain-spec holds macros or not (an ``exists:%{i}._spf.
        example`` is one lookup; an ``include:%{d}._spf.example`` is one plus whatever
        the record it names at evaluation time needs)."""
        return self.name in LOOKUP_MECHANISMS or (self.modifier and self.name == "redirect")

    def __str__(self) -> str:
        if self.modifier:
            return f"{self.name}={self.value}"
        qualifier = "" if self.qualifier == "+" else self.qualifier
        sep = ":" if self.value and not self.value.startswith("/") else ""
        return f"{qualifier}{self.name}{sep}{self.value}"


#: Terms up to this long are cached (a real term is a few dozen characters; a hostile
#: stack file's huge ones are parsed, refused and forgotten).
CACHED_TERM_LENGTH = 256


def parse_term(text: str) -> Term:
    """Parse one SPF term; raise SpfSyntaxError naming it when it is not valid.

    Cached (a Term is immutable): a stack of many domains plans and checks the same
    SPF terms once per domain."""
    if len(text) <= CACHED_TERM_LENGTH:
        return _parse_term_cached(text)
    return _parse_term(text)


@functools.lru_cache(maxsize=8192)
def _parse_term_cached(text: str) -> Term:
    return _parse_term(text)


def _parse_term(text: str) -> Term:
    if not text.isascii() or not text.isprintable() or " " in text:
        # RFC 7208 §4.6.1/§7.1: terms are visible ASCII (%x21-7E).
        raise SpfSyntaxError(f"{quote(text)} is not an SPF term: only visible ASCII characters (RFC 7208 §7.1)")
    modifier = _MODIFIER.match(text)
    if modifier and modifier["name"].lower() not in MECHANISMS:
        name = modifier["name"].lower()
        if not modifier["value"] and name in MODIFIERS:
            raise SpfSyntaxError(f"modifier {quote(text)} has no value")
        if name in DOMAIN_SPEC_TERMS and has_macro(modifier["value"]):
            check_macros(modifier["value"])
        return Term("", name, modifier["value"], modifier=True)
    match = _TERM.match(text)
    if not match or match["name"].lower() not in MECHANISMS:
        raise SpfSyntaxError(f"{quote(text)} is not an SPF mechanism or modifier")
    name = match["name"].lower()
    rest = match["rest"] or ""
    if rest.startswith("="):
        raise SpfSyntaxError(f"{quote(text)}: mechanism {name} takes ':' not '='")
    value = rest[1:] if rest.startswith(":") else rest
    _check_value(text, name, value)
    return Term(match["qualifier"] or "+", name, value)


def _check_value(text: str, name: str, value: str) -> None:
    if name in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as err:
            raise SpfSyntaxError(f"{quote(text)}: {quote(value)} is not an {name} address or network") from err
        if (name == "ip4") != (network.version == 4):
            raise SpfSyntaxError(f"{quote(text)}: address family does not match {name}")
    elif name in ("include", "exists") and not value:
        raise SpfSyntaxError(f"{quote(text)}: {name} needs a domain")
    elif name == "all" and value:
        raise SpfSyntaxError(f"{quote(text)}: all takes no argument")
    if name in DOMAIN_SPEC_TERMS and has_macro(value):
        # a and mx carry an optional CIDR length after the domain-spec ("/24", "//64")
        spec = value.split("/", 1)[0] if name in ("a", "mx") else value
        check_macros(spec)


def parse(record: str) -> list[Term]:
    """Parse a whole SPF record (``v=spf1 ...``) into its terms."""
    parts = record.split()
    if not parts or parts[0].lower() != "v=spf1":
        raise SpfSyntaxError("an SPF record starts with 'v=spf1'")
    terms = [parse_term(part) for part in parts[1:]]
    redirects = [t for t in terms if t.modifier and t.name == "redirect"]
    if len(redirects) > 1 or len([t for t in terms if t.modifier and t.name == "exp"]) > 1:
        raise SpfSyntaxError("redirect and exp may each appear at most once (RFC 7208 §6)")
    return terms


def is_spf(text: str) -> bool:
    """True when a TXT value is an SPF record (RFC 7208 §4.5: 'v=spf1' then space or end)."""
    lowered = text.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def lookup_count(terms: Iterable[Term]) -> int:
    """Terms of this record that query DNS (not following includes: that needs I/O)."""
    return sum(1 for term in terms if term.queries_dns)


def size(record: str) -> int:
    """The record's size in bytes as published."""
    return len(record.encode("ascii"))


def sender_term(text: str) -> Term:
    """One term a sender contributes to the merged record; SpfSyntaxError when it is
    invalid or cannot be merged: ``all`` (the record's ``all`` is set once, by the
    stack's ``spf.all``), ``redirect`` (it ends evaluation) or a second ``v=spf1``."""
    term = parse_term(text)
    if term.name == "all" and not term.modifier:
        raise SpfSyntaxError(f"{quote(text)}: the all term is set once, by mailstack:spf.all")
    if term.modifier and term.name == "v":
        raise SpfSyntaxError(f"{quote(text)}: give the terms only; mailstack writes v=spf1")
    if term.modifier and term.name == "redirect":
        raise SpfSyntaxError(f"{quote(text)}: redirect cannot be merged with other senders")
    return term


def build(terms: Iterable[str], all_term: str = "~all") -> str:
    """One SPF record from sender terms: de-duplicated in first-seen order, ``all`` last.

    Raises SpfSyntaxError for a term ``sender_term`` refuses or an ``all`` that is not
    ~all/-all.
    """
    if all_term not in ALL_QUALIFIERS:
        raise SpfSyntaxError(f"{quote(all_term)} is not one of {', '.join(ALL_QUALIFIERS)}")
    seen: list[str] = []
    for text in terms:
        rendered = str(sender_term(text))
        if rendered not in seen:
            seen.append(rendered)
    return " ".join(["v=spf1", *seen, all_term])


def budget_problems(record: str) -> list[str]:
    """Static problems of one record: over the lookup budget or over the size limit."""
    return list(_budget_problems(record))


@functools.lru_cache(maxsize=1024)
def _budget_problems(record: str) -> tuple[str, ...]:
    problems = []
    count = lookup_count(parse(record))
    if count > LOOKUP_LIMIT:
        problems.append(
            f"SPF needs {count} DNS lookups at its top level, over the limit of "
            f"{LOOKUP_LIMIT} (RFC 7208 §4.6.4)"
        )
    if size(record) > SIZE_LIMIT:
        problems.append(f"SPF record is {size(record)} bytes, over {SIZE_LIMIT} (RFC 7208 §3.4)")
    return tuple(problems)
