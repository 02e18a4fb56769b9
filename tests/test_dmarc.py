"""DMARC rules (mailstack.rules.dmarc): building from tags, parsing, validating values."""

from __future__ import annotations

import pytest

from mailstack.rules import dmarc


def test_build_minimal_is_odoo_example() -> None:
    # Odoo's documentation example.
    assert dmarc.build("none", rua=["mailto:postmaster@example.com"]) == "v=DMARC1; p=none; rua=mailto:postmaster@example.com"


def test_build_full_tag_order_and_defaults_left_out() -> None:
    value = dmarc.build(
        "reject",
        subdomain_policy="quarantine",
        rua=["mailto:a@example.com", "https://reports.example.net/dmarc"],
        ruf=["mailto:f@example.com!10m"],
        adkim="s",
        aspf="s",
        fo="1:d",
        testing=True,
        nonexistent_policy="reject",
    )
    assert value == (
        "v=DMARC1; p=reject; sp=quarantine; np=reject; t=y; rua=mailto:a@example.com,https://reports.example.net/dmarc; "
        "ruf=mailto:f@example.com!10m; adkim=s; aspf=s; fo=1:d"
    )
    assert dmarc.build("none", adkim="r", aspf="r") == "v=DMARC1; p=none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "rejectt"}, "p='rejectt' is not one of none, quarantine, reject"),
        ({"policy": "none", "subdomain_policy": "all"}, "sp='all' is not one of none"),
        ({"policy": "none", "adkim": "x"}, "adkim='x' is not r or s"),
        ({"policy": "none", "aspf": "relaxed"}, "aspf='relaxed' is not r or s"),
        ({"policy": "none", "nonexistent_policy": "drop"}, "np='drop' is not one of none"),
        ({"policy": "none", "rua": ["postmaster@example.com"]}, "is not a mailto: or https: report URI"),
        ({"policy": "none", "ruf": ["http://example.com/r"]}, "is not a mailto: or https: report URI"),
        ({"policy": "none", "fo": "2"}, "fo='2'"),
    ],
)
def test_build_validates(kwargs: dict[str, object], message: str) -> None:
    policy = kwargs.pop("policy")
    with pytest.raises(dmarc.DmarcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dmarc.build(policy, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uri",
    ["mailto:dmarc@example.com", "mailto:d+x@sub.example.co.uk!10m", "https://r.example.net/x?y=1", "MAILTO:A@EXAMPLE.COM"],
)
def test_check_uri_accepts(uri: str) -> None:
    assert dmarc.check_uri(uri) == uri


@pytest.mark.parametrize("uri", ["dmarc@example.com", "mailto:nodomain", "mailto:a@b", "http://example.com", "mailto:a b@example.com", ""])
def test_check_uri_rejects(uri: str) -> None:
    with pytest.raises(dmarc.DmarcError):
        dmarc.check_uri(uri)


def test_uri_domain() -> None:
    assert dmarc.uri_domain("mailto:dmarc@Reports.Example.NET!10m") == "reports.example.net"
    assert dmarc.uri_domain("https://example.com/r") is None


def test_parse() -> None:
    assert dmarc.parse("v=DMARC1; p=reject; rua=mailto:a@example.com;") == {
        "v": "DMARC1",
        "p": "reject",
        "rua": "mailto:a@example.com",
    }
    with pytest.raises(dmarc.DmarcError, match="starts with 'v=DMARC1'"):
        dmarc.parse("p=none; v=DMARC1")
    with pytest.raises(dmarc.DmarcError, match="appears twice"):
        dmarc.parse("v=DMARC1; p=none; p=reject")
    with pytest.raises(dmarc.DmarcError, match="empty"):
        dmarc.parse("  ")


def test_validate_warnings_and_required_p() -> None:
    assert dmarc.validate(dmarc.parse("v=DMARC1; p=none")) == [
        "p=none without rua: nobody sees the reports, the policy does nothing"
    ]
    assert dmarc.validate(dmarc.parse("v=DMARC1; p=reject; zz=1")) == ["unknown tag zz: ignored by receivers (RFC 9989 §4.7)"]
    with pytest.raises(dmarc.DmarcError, match="p= tag is required"):
        dmarc.validate(dmarc.parse("v=DMARC1; rua=mailto:a@example.com"))


def test_report_authorization_name() -> None:
    assert dmarc.report_authorization_name("brand.example", "group.example") == "brand.example._report._dmarc.group.example"


def test_relaxed_alignment_is_one_rule_by_organizational_domain() -> None:
    """Regression (issue 9): the checks had their own alignment test (one name inside
    the other) that called news.example.com and shop.example.com unaligned; RFC 7489
    §3.1 relaxed alignment compares Organizational Domains (public suffix list)."""
    assert dmarc.aligned("news.example.com", "shop.example.com", "r") is True
    assert dmarc.aligned("news.example.com", "shop.example.com", "s") is False
    assert dmarc.aligned("a.example.co.uk", "b.example.co.uk", "r") is True
    assert dmarc.aligned("example.co.uk", "other.co.uk", "r") is False
    import mailstack.checks.groups.dmarc as dmarc_checks

    assert not hasattr(dmarc_checks, "_aligned"), "the checks use mailstack.rules.dmarc.aligned"


def test_policy_discovery_walks_the_tree_down_to_the_tld() -> None:
    """RFC 9989 §4.10.1: the name, then (beyond 7 labels) its last 7, then one label
    less each step down to the TLD (a PSD may publish there): at most 8 queries."""
    assert dmarc.policy_names("mail.shop.example.com") == (
        "_dmarc.mail.shop.example.com", "_dmarc.shop.example.com", "_dmarc.example.com", "_dmarc.com")
    assert dmarc.policy_names("Example.COM.") == ("_dmarc.example.com", "_dmarc.com")
    deep = "a.b.c.d.e.f.g.h.i.example"  # 10 labels
    walk = dmarc.walk(deep)
    assert walk[0] == deep and walk[1] == "d.e.f.g.h.i.example" and walk[-1] == "example"
    assert len(walk) == dmarc.TREE_WALK_QUERIES == 8
    assert "b.c.d.e.f.g.h.i.example" not in walk and "c.d.e.f.g.h.i.example" not in walk  # 9 and 8 labels: skipped


def test_organizational_domain_by_the_tree_walk() -> None:
    """RFC 9989 §4.10.2: psd=n ends the walk at that name; psd=y makes the name one
    label below the PSD the Organizational Domain; else the shortest name with a
    record; no record at all: the name itself."""
    walk = {"_dmarc." + n: None for n in dmarc.walk("a.b.brand.psd.example")}
    found = {n.removeprefix("_dmarc."): r for n, r in walk.items()}
    assert dmarc.discover("a.b.brand.psd.example", found).organizational_domain == "a.b.brand.psd.example"
    found["psd.example"] = "v=DMARC1; p=reject; psd=y"
    d = dmarc.discover("a.b.brand.psd.example", found)
    assert (d.organizational_domain, d.policy_domain, d.inherited) == ("brand.psd.example", "psd.example", True)
    found["b.brand.psd.example"] = "v=DMARC1; p=none; rua=mailto:x@b.brand.psd.example"
    d = dmarc.discover("a.b.brand.psd.example", found)  # no record at brand.psd: the PSD's applies
    assert (d.organizational_domain, d.policy_domain) == ("brand.psd.example", "psd.example")
    found["brand.psd.example"] = "v=DMARC1; p=quarantine"
    assert dmarc.discover("a.b.brand.psd.example", found).policy_domain == "brand.psd.example"
    del found["brand.psd.example"]
    found["b.brand.psd.example"] = "v=DMARC1; p=none; psd=n"
    assert dmarc.discover("a.b.brand.psd.example", found).organizational_domain == "b.brand.psd.example"
    # no psd anywhere: the shortest name with a record
    plain = {"mail.shop.example.com": None, "shop.example.com": "v=DMARC1; p=none", "example.com": "v=DMARC1; p=reject", "com": None}
    assert dmarc.discover("mail.shop.example.com", plain).organizational_domain == "example.com"
    # ...whose record applies: the intermediate shop.example.com publishes for itself only
    assert dmarc.discover("mail.shop.example.com", plain).policy_domain == "example.com"
    assert dmarc.discover("shop.example.com", plain).policy_domain == "shop.example.com"
    # a PSD's own name is its own Organizational Domain
    assert dmarc.discover("psd.example", {"psd.example": "v=DMARC1; p=reject; psd=y", "example": None}).organizational_domain == "psd.example"
    # the walk may stop at a psd= record: the names above it are not needed
    assert dmarc.decided("a.b.brand.psd.example", {"a.b.brand.psd.example": None, "b.brand.psd.example": "v=DMARC1; p=none; psd=n"})
    assert not dmarc.decided("a.b.brand.psd.example", {"a.b.brand.psd.example": None})


def test_dmarcbis_tags_removed_unknown_and_test_mode() -> None:
    tags = dmarc.parse("v=DMARC1; p=reject; pct=0; rf=afrf; ri=3600; foo=bar; t=n")
    notes = dmarc.validate(tags)
    assert dmarc.removed_tags(tags) == ["pct", "rf", "ri"]
    assert any(n.startswith("removed tag pct") for n in notes) and any(n.startswith("unknown tag foo: ignored") for n in notes)
    assert dmarc.without_removed(tags) == "v=DMARC1; p=reject; foo=bar; t=n"
    assert dmarc.without_removed(dmarc.parse("v=DMARC1; p=reject; pct=0")) == "v=DMARC1; p=reject; t=y"
    # a removed tag's value is no longer judged: receivers ignore the tag
    assert dmarc.validate(dmarc.parse("v=DMARC1; p=reject; pct=150")) != []
    assert dmarc.testing(dmarc.parse("v=DMARC1; p=reject; t=y")) and not dmarc.testing(dmarc.parse("v=DMARC1; p=reject; pct=0"))
    for bad, words in (("t=maybe", "t='maybe' is not y or n"), ("psd=x", "psd='x' is not y, n or u"), ("np=drop", "np='drop'")):
        with pytest.raises(dmarc.DmarcError, match=words):
            dmarc.validate(dmarc.parse(f"v=DMARC1; p=reject; {bad}"))


def test_no_planned_dmarc_record_carries_a_removed_tag() -> None:
    """Plan and policy pack agree: the planner writes no pct/rf/ri (RFC 9989), which the
    policy pack's dmarc-valid refuses and dmarc.removed-tags warns about."""
    from mailstack import plan
    from tests import check_zones

    records = [r for name in check_zones.STACKS for r in plan.build(check_zones.load_stack(name)).records if r.purpose == "dmarc"]
    assert records
    assert all(dmarc.removed_tags(dmarc.parse(r.content)) == [] for r in records), [r.content for r in records]


@pytest.mark.parametrize(("record", "own", "subdomain", "made_up"), [
    ("v=DMARC1; p=reject", "reject", "reject", "reject"),  # np -> sp -> p: p for all
    ("v=DMARC1; p=reject; sp=none", "reject", "none", "none"),  # np falls back to sp
    ("v=DMARC1; p=reject; sp=none; np=reject", "reject", "none", "reject"),
    ("v=DMARC1; p=none; np=quarantine", "none", "none", "quarantine"),  # np without sp: sp falls back to p
])
def test_the_policy_applied_to_subdomains_falls_back_np_sp_p(record: str, own: str, subdomain: str, made_up: str) -> None:
    """RFC 9989 §4.7: sp= defaults to p=, np= to sp= (then p=); the publishing domain gets p=."""
    tags = dmarc.parse(record)
    assert dmarc.applied_policy(tags, inherited=False) == own
    assert dmarc.applied_policy(tags, inherited=False, nonexistent=True) == own  # the domain itself exists
    assert dmarc.applied_policy(tags, inherited=True) == subdomain
    assert dmarc.applied_policy(tags, inherited=True, nonexistent=True) == made_up


def test_strictness_order_and_the_record_a_fix_asks_for() -> None:
    assert dmarc.stricter_or_equal("reject", "quarantine") and dmarc.stricter_or_equal("none", "none")
    assert not dmarc.stricter_or_equal("none", "reject") and not dmarc.stricter_or_equal("quarantine", "reject")
    tags = dmarc.parse("v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com")
    assert dmarc.with_tag(tags, "np", "reject") == "v=DMARC1; p=reject; sp=none; np=reject; rua=mailto:d@example.com"
    assert dmarc.with_tag(dmarc.parse("v=DMARC1; p=reject; np=none"), "np", "reject") == "v=DMARC1; p=reject; np=reject"
