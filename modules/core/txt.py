"""TXT values: splitting into RFC 1035 character-strings and each provider's text form.

A TXT record's data is one or more character-strings of at most 255 bytes each; mail
consumers (SPF, DKIM, DMARC) concatenate them without spaces (RFC 7208 §3.3, RFC 6376
§3.6.2.2). We keep the plain value in ``Record.content`` and derive the split forms here
so plan, providers, policy and checks agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_STRING = 255


def split(value: str, size: int = MAX_STRING) -> list[str]:
    """Split a TXT value into character-strings of at most ``size`` bytes.

    Only ASCII is accepted (mail TXT records are ASCII by their RFCs), so bytes and
    characters coincide and no multi-byte character can be cut in half.
    """
    if not value.isascii():
        raise ValueError("TXT value must be ASCII")
    if not value:
        return [""]
    return [value[i : i + size] for i in range(0, len(value), size)]


def join(strings: list[str] | tuple[str, ...]) -> str:
    """Concatenate character-strings the way SPF/DKIM/DMARC consumers do."""
    return "".join(strings)


def from_wire(strings: Iterable[bytes]) -> str:
    """The plain value of a TXT rdata's character-strings as DNS carries them: joined
    without spaces, bytes outside ASCII kept visible as ``\\xNN`` (never dropped or
    replaced, so a non-ASCII record never compares equal to an ASCII one)."""
    return join([s.decode("ascii", "backslashreplace") for s in strings])


def _quote(chunk: str) -> str:
    return '"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quoted(value: str) -> str:
    """The quoted, space-joined form: Cloudflare's TXT ``content`` and zone-file rdata.

    ``"v=DKIM1; k=rsa; p=MIIB...(255 bytes)" "rest"``. Cloudflare stores TXT content in
    this form; sending it unquoted or unsplit shows a diff on every ``pulumi up``.
    """
    return " ".join(_quote(chunk) for chunk in split(value))


def unquote(text: str) -> str:
    """Parse the quoted form back into the plain value (the inverse of ``quoted``).

    Unquoted text is returned as is, so a value read from an API that does not quote
    still compares equal.
    """
    text = text.strip()
    if not text.startswith('"'):
        return text
    chunks: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        if text[i] != '"':
            raise ValueError(f"unexpected character {text[i]!r} at {i} in TXT content")
        i += 1
        chunk = []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chunk.append(text[i])
            i += 1
        if i >= len(text):
            raise ValueError("unterminated quoted string in TXT content")
        i += 1
        chunks.append("".join(chunk))
    return join(chunks)


def is_cloudflare_form(text: str) -> bool:
    """True when text is quoted and every character-string is at most 255 bytes."""
    if not text.startswith('"'):
        return False
    try:
        plain = unquote(text)
    except ValueError:
        return False
    return quoted(plain) == text
