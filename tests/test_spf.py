"""SPF rules (mailstack.rules.spf): parsing, building one merged record, lookup budget, size."""

from __future__ import annotations

import pytest

from mailstack.rules import spf


@pytest.mark.parametrize(
    ("text", "qualifier", "name", "value"),
    [
        ("include:_spf.odoo.com", "+", "include", "_spf.odoo.com"),
        ("-ip4:192.0.2.0/24", "-", "ip4", "192.0.2.0/24"),
        ("~all", "~", "all", ""),
        ("ip6:2001:db8::/32", "+", "ip6", "2001:db8::/32"),
        ("a", "+", "a", ""),
        ("mx/24", "+", "mx", "/24"),
        ("?exists:%{i}.spf.example.net", "?", "exists", "%{i}.spf.example.net"),
        ("INCLUDE:Example.NET", "+", "include", "Example.NET"),
    ],
)
def test_parse_term(text: str, qualifier: str, name: str, value: str) -> None:
    term = spf.parse_term(text)
    assert (term.qualifier, term.name, term.value, term.modifier) == (qualifier, name, value, False)


def test_parse_modifier() -> None:
    term = spf.parse_term("redirect=_spf.example.net")
    assert term.modifier and term.name == "redirect" and term.queries_dns
    assert str(term) == "redirect=_spf.example.net"
    assert not spf.parse_term("exp=explain.example.net").queries_dns


@pytest.mark.parametrize(
    "text",
    ["ip4:1.2.3", "ip4:2001:db8::1", "ip6:192.0.2.1", "include:", "exists", "all:x", "foo:bar", "include=x.com", "redirect=", ""],
)
def test_parse_term_rejects(text: str) -> None:
    with pytest.raises(spf.SpfSyntaxError):
        spf.parse_term(text)


def test_term_str_round_trip() -> None:
    for text in ("include:_spf.odoo.com", "-ip4:192.0.2.1", "mx/24", "a:mail.example.com/28", "~all"):
        assert str(spf.parse_term(text)) == text
    assert str(spf.parse_term("+a")) == "a"


def test_build_merges_in_order_and_dedupes() -> None:
    value = spf.build(["include:_spf.odoo.com", "ip4:192.0.2.1", "+include:_spf.odoo.com", "include:spf.mailjet.com"])
    assert value == "v=spf1 include:_spf.odoo.com ip4:192.0.2.1 include:spf.mailjet.com ~all"
    assert spf.build(["include:_spf.odoo.com"], "-all") == "v=spf1 include:_spf.odoo.com -all"


@pytest.mark.parametrize("terms", [["~all"], ["redirect=_spf.example.net"], ["v=spf1"], ["bogus"]])
def test_build_refuses_terms_it_cannot_merge(terms: list[str]) -> None:
    with pytest.raises(spf.SpfSyntaxError):
        spf.build(terms)


@pytest.mark.parametrize("all_term", ["+all", "?all", "all", "~ALL"])
def test_build_refuses_weak_all(all_term: str) -> None:
    with pytest.raises(spf.SpfSyntaxError, match="is not one of ~all, -all"):
        spf.build(["a"], all_term)


def test_parse_record() -> None:
    terms = spf.parse("v=spf1 include:_spf.odoo.com mx -all")
    assert [t.name for t in terms] == ["include", "mx", "all"]
    with pytest.raises(spf.SpfSyntaxError, match="starts with 'v=spf1'"):
        spf.parse("v=spf2 -all")
    with pytest.raises(spf.SpfSyntaxError, match="at most once"):
        spf.parse("v=spf1 redirect=a.example redirect=b.example")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v=spf1 -all", True), ("v=spf1", True), ("V=SPF1 mx", True), ("v=spf10 -all", False), ("v=DMARC1; p=none", False), ("", False)],
)
def test_is_spf(text: str, expected: bool) -> None:
    assert spf.is_spf(text) is expected


def test_lookup_count_counts_only_dns_terms() -> None:
    record = "v=spf1 include:a.example a mx ptr exists:%{i}.x.example ip4:192.0.2.1 ip6:2001:db8::1 redirect=r.example"
    assert spf.lookup_count(spf.parse(record)) == 6


def test_budget_exactly_ten_passes_eleven_fails() -> None:
    ten = spf.build([f"include:s{i}.example.net" for i in range(10)])
    assert spf.budget_problems(ten) == []
    eleven = spf.build([f"include:s{i}.example.net" for i in range(10)] + ["mx"])
    assert spf.budget_problems(eleven) == [
        "SPF needs 11 DNS lookups at its top level, over the limit of 10 (RFC 7208 §4.6.4)"
    ]


def test_size_limit() -> None:
    many = [f"ip4:10.0.{i // 256}.{i % 256}" for i in range(40)]
    record = spf.build(many)
    assert spf.size(record) > spf.SIZE_LIMIT
    problems = spf.budget_problems(record)
    assert len(problems) == 1 and f"{spf.size(record)} bytes, over 512" in problems[0]
    assert spf.budget_problems(spf.build(many[:20])) == []


VALID_MACROS = ["exists:%{i}._spf.example.com", "include:%{d}._spf.example.net", "a:%{d}/24", "mx:%{o}//64",
                "redirect=%{d}.spf.example", "exists:%{ir}.%{v}._spf.%{d2}", "exists:%{l1r-}.x.example", "exists:%{i}",
                "exp=explain.%{d}", "exists:%{l}.%%.%_.%-.example.com", "exists:%{H}.%{S}.example.com"]
#: (term, our words); pyspf (independent) raises PermError on each of these as well.
INVALID_MACROS = [("exists:%{x}.example.com", "%{x} is not a macro letter"),
                  ("exists:%{c}.example.com", "allowed only in explanation text"),
                  ("include:%i.example.com", "is not a macro"),
                  ("exists:50%.example.com", "is not a macro")]
#: Where RFC 7208's grammar and pyspf's leniency part: we follow the RFC (§7.1, §7.3).
RFC_ONLY = [("exists:%{i0}.example.com", "transformer 0"), ("exists:%{i.example.com", "is not a macro"),
            ("include:%{d}.", "ends with a macro or a '.' and a top label")]


@pytest.mark.parametrize("term", VALID_MACROS)
def test_spf_macros_valid_count_one_lookup_and_pyspf_expands_them(term: str) -> None:
    import spf as pyspf

    parsed = spf.parse_term(term)
    assert spf.has_macro(parsed.value)
    assert spf.lookup_count([parsed]) == (0 if term.startswith("exp=") else 1)
    spec = parsed.value.split("/", 1)[0] if parsed.name in ("a", "mx") else parsed.value
    pyspf.query(i="192.0.2.1", s="a@b.example", h="b.example", querytime=0).expand(spec)  # no PermError


@pytest.mark.parametrize(("term", "words"), INVALID_MACROS + RFC_ONLY)
def test_spf_macros_invalid_are_refused_naming_the_part(term: str, words: str) -> None:
    import spf as pyspf

    with pytest.raises(spf.SpfSyntaxError, match=words.replace("(", r"\(").replace("{", r"\{").replace("%", "%")):
        spf.parse_term(term)
    if (term, words) in INVALID_MACROS:
        with pytest.raises(pyspf.PermError):
            pyspf.query(i="192.0.2.1", s="a@b.example", h="b.example", querytime=0).expand(term.split(":", 1)[1])
