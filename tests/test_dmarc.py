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
        pct=50,
        fo="1:d",
    )
    assert value == (
        "v=DMARC1; p=reject; sp=quarantine; pct=50; rua=mailto:a@example.com,https://reports.example.net/dmarc; "
        "ruf=mailto:f@example.com!10m; adkim=s; aspf=s; fo=1:d"
    )
    assert dmarc.build("none", adkim="r", aspf="r", pct=100) == "v=DMARC1; p=none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "rejectt"}, "p='rejectt' is not one of none, quarantine, reject"),
        ({"policy": "none", "subdomain_policy": "all"}, "sp='all' is not one of none"),
        ({"policy": "none", "adkim": "x"}, "adkim='x' is not r or s"),
        ({"policy": "none", "aspf": "relaxed"}, "aspf='relaxed' is not r or s"),
        ({"policy": "none", "pct": 101}, "pct='101' is not an integer from 0 to 100"),
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
    assert dmarc.validate(dmarc.parse("v=DMARC1; p=reject; zz=1")) == ["unknown tag zz"]
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


def test_policy_discovery_walks_the_tree() -> None:
    assert dmarc.policy_names("mail.shop.example.com") == ("_dmarc.mail.shop.example.com", "_dmarc.shop.example.com", "_dmarc.example.com")
    assert dmarc.policy_names("Example.COM.") == ("_dmarc.example.com",)
