"""TXT character-strings (mailstack.core.txt) and their zone-file / Cloudflare forms."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from mailstack.core import txt


def test_split_short_value_is_one_string() -> None:
    assert txt.split("v=spf1 -all") == ["v=spf1 -all"]
    assert txt.split("") == [""]


def test_split_at_255_bytes() -> None:
    value = "a" * 255
    assert txt.split(value) == [value]
    assert txt.split(value + "b") == [value, "b"]
    chunks = txt.split("x" * 600)
    assert [len(c) for c in chunks] == [255, 255, 90]


def test_split_refuses_non_ascii() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        txt.split("v=spf1 include:bücher.example -all")


def test_quoted_is_cloudflare_form() -> None:
    assert txt.quoted("v=spf1 -all") == '"v=spf1 -all"'
    long_value = "p=" + "A" * 300
    assert txt.quoted(long_value) == f'"{long_value[:255]}" "{long_value[255:]}"'
    assert txt.quoted('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


def test_unquote_inverts_quoted() -> None:
    for value in ("v=DKIM1; k=rsa; p=" + "B" * 400, 'a "quoted" \\ value', "", "x" * 255):
        assert txt.unquote(txt.quoted(value)) == value


def test_unquote_passes_unquoted_text() -> None:
    assert txt.unquote("v=spf1 -all") == "v=spf1 -all"


@pytest.mark.parametrize("bad", ['"unterminated', '"a" x "b"'])
def test_unquote_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        txt.unquote(bad)


def test_is_cloudflare_form() -> None:
    value = "v=DKIM1; k=rsa; p=" + "C" * 380
    assert txt.is_cloudflare_form(txt.quoted(value))
    assert not txt.is_cloudflare_form(value)  # unquoted
    assert not txt.is_cloudflare_form(f'"{value}"')  # quoted but unsplit (> 255)
    assert not txt.is_cloudflare_form('"a"  "b"')  # two spaces: Cloudflare would differ


def test_quoted_parses_with_dnspython() -> None:
    value = "v=DKIM1; k=rsa; p=" + "D" * 500
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, txt.quoted(value))
    strings = [s.decode() for s in rdata.strings]  # type: ignore[attr-defined]
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == value
