"""DMARC (RFC 7489, RFC 9989 for report authorisation), written once: build the record
from the stack's tags, parse and validate a published one."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailstack.core import names
from mailstack.core.errors import RuleError, quote

POLICIES = ("none", "quarantine", "reject")
ALIGNMENTS = ("r", "s")
FO_VALUES = frozenset({"0", "1", "d", "s"})
KNOWN_TAGS = ("v", "p", "sp", "np", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri", "psd", "t")
#: A report URI (RFC 7489 §6.2): ``mailto:`` or ``https:``, then an optional ``!size``.
#: Only characters a URI may hold unescaped (RFC 3986), less DMARC's own separators
#: (``,`` between URIs, ``!`` before the size, ``;`` between tags), which must be
#: percent-encoded; nothing else ever reaches the TXT record.
_URI_CHAR = r"(?:[A-Za-z0-9._~$&'()*+=-]|%[0-9A-Fa-f]{2})"
_MAILTO = re.compile(rf"mailto:(?P<local>{_URI_CHAR}+)@(?P<domain>[A-Za-z0-9.-]+)(?P<size>![0-9]+[kmgt]?)?", re.I)
_HTTPS = re.compile(
    rf"https://(?P<authority>[^/?#]*)(?P<rest>(?:[/?]|{_URI_CHAR}|[:@/?])*)(?P<size>![0-9]+[kmgt]?)?", re.I
)
_AUTHORITY = re.compile(r"(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")


class DmarcError(RuleError):
    """A DMARC record or tag value that is not valid."""


#: The DMARC version tag a record starts with (RFC 7489 §6.3).
VERSION = "v=DMARC1"
#: The TXT value by which a report domain authorises reports about another (§7.1).
REPORT_AUTHORIZATION = VERSION


def is_dmarc(text: str) -> bool:
    """True when a TXT value at ``_dmarc`` is a DMARC record (starts with v=DMARC1)."""
    return text.strip().lower().startswith(VERSION.lower())


def record_name(domain: str) -> str:
    """Where a domain's policy lives: ``_dmarc.<domain>``."""
    return f"_dmarc.{domain}"


def is_policy_name(name: str) -> bool:
    """True when a name is where a DMARC policy lives (``_dmarc.<domain>``)."""
    return name.startswith("_dmarc.")


def uris(tags: dict[str, str], name: str) -> list[str]:
    """The URIs of a ``rua``/``ruf`` tag, split at commas (RFC 7489 §6.4), blanks dropped."""
    return [uri for uri in (part.strip() for part in tags.get(name, "").split(",")) if uri]


def report_domains(report_uris: Iterable[str]) -> list[str]:
    """The domains ``mailto:`` report URIs deliver to, in order (https: has none)."""
    return [d for d in (uri_domain(u) for u in report_uris) if d]


def is_external(report_domain: str, domain: str) -> bool:
    """True when reports about ``domain`` sent to ``report_domain`` need its consent
    (RFC 7489 §7.1): neither is inside the other."""
    return not names.within(report_domain, domain) and not names.within(domain, report_domain)


def check_uri(uri: str) -> str:
    """Validate one report URI (``mailto:`` or ``https:``); return it unchanged.

    The whole text must match (a trailing newline is not "the end"), the address or
    host must be a host name, and an https: URI must not carry credentials."""
    if not isinstance(uri, str):
        raise DmarcError("must be a mailto: or https: report URI")
    mailto = _MAILTO.fullmatch(uri)
    https = _HTTPS.fullmatch(uri) if not mailto else None
    if mailto:
        host = mailto["domain"]
    elif https:
        authority = _AUTHORITY.fullmatch(https["authority"])
        if "@" in https["authority"]:
            raise DmarcError(f"{quote(uri)} carries credentials (user@ or user:password@): a report URI is public")
        if not authority or (authority["port"] and not 1 <= int(authority["port"]) <= 65535):
            raise DmarcError(f"{quote(uri)} is not a mailto: or https: report URI")
        host = authority["host"]
    else:
        raise DmarcError(f"{quote(uri)} is not a mailto: or https: report URI")
    try:
        names.hostname(host)
    except names.InvalidName:
        raise DmarcError(f"{quote(uri)} is not a mailto: or https: report URI: {quote(host)} is not a host name") from None
    return uri


def check_fo(value: str, *, tag: str = "") -> str:
    """Validate a failure-reporting option list (``fo``, RFC 7489 §6.3): a ':'-list of
    0, 1, d, s; return it unchanged."""
    if not set(value.split(":")) <= FO_VALUES:
        raise DmarcError(f"{tag}{quote(value)} is not a ':'-list of 0, 1, d, s")
    return value


def uri_domain(uri: str) -> str | None:
    """The domain a mailto: report URI delivers to (None for https:)."""
    if not uri.lower().startswith("mailto:"):
        return None
    address = uri[len("mailto:"):].split("!")[0]
    return address.rsplit("@", 1)[1].lower()


def build(
    policy: str,
    *,
    subdomain_policy: str | None = None,
    rua: Iterable[str] = (),
    ruf: Iterable[str] = (),
    adkim: str = "r",
    aspf: str = "r",
    pct: int | None = None,
    fo: str | None = None,
) -> str:
    """The DMARC TXT value; tags in a fixed order so the same stack gives the same bytes.

    Defaults (adkim=r, aspf=r, pct=100) are left out: shorter, and what receivers assume.
    """
    tags = {"v": "DMARC1", "p": policy}
    if subdomain_policy:
        tags["sp"] = subdomain_policy
    if pct is not None and pct != 100:
        tags["pct"] = str(pct)
    if rua := list(rua):
        tags["rua"] = ",".join(rua)
    if ruf := list(ruf):
        tags["ruf"] = ",".join(ruf)
    if adkim != "r":
        tags["adkim"] = adkim
    if aspf != "r":
        tags["aspf"] = aspf
    if fo:
        tags["fo"] = fo
    text = "; ".join(f"{k}={v}" for k, v in tags.items())
    validate(parse(text))
    return text


def parse(text: str) -> dict[str, str]:
    """Parse a DMARC record into its tags; v=DMARC1 must come first (RFC 7489 §6.3)."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in text.strip().split(";")]
    for index, part in enumerate(p for p in parts if p):
        if "=" not in part:
            raise DmarcError(f"{quote(part)} is not a tag=value pair")
        name, value = (s.strip() for s in part.split("=", 1))
        if index == 0 and f"{name}={value}" != VERSION:
            raise DmarcError("a DMARC record starts with 'v=DMARC1'")
        if name in tags:
            raise DmarcError(f"tag {name} appears twice")
        tags[name] = value
    if not tags:
        raise DmarcError("empty DMARC record")
    return tags


def validate(tags: dict[str, str]) -> list[str]:
    """Check tag values; raise DmarcError on the first invalid one, return warnings."""
    warnings: list[str] = []
    if "p" not in tags:
        raise DmarcError("the p= tag is required (RFC 7489 §6.3)")
    for name in ("p", "sp", "np"):
        if name in tags and tags[name] not in POLICIES:
            raise DmarcError(f"{name}={quote(tags[name])} is not one of {', '.join(POLICIES)}")
    for name in ("adkim", "aspf"):
        if name in tags and tags[name] not in ALIGNMENTS:
            raise DmarcError(f"{name}={quote(tags[name])} is not r or s")
    if "pct" in tags:
        if not tags["pct"].isdigit() or not 0 <= int(tags["pct"]) <= 100:
            raise DmarcError(f"pct={quote(tags['pct'])} is not an integer from 0 to 100")
    for name in ("rua", "ruf"):
        for uri in uris(tags, name):
            check_uri(uri)
    if "fo" in tags:
        check_fo(tags["fo"], tag="fo=")
    for name in tags:
        if name not in KNOWN_TAGS:
            warnings.append(f"unknown tag {name}")
    if tags["p"] == "none" and not tags.get("rua"):
        warnings.append("p=none without rua: nobody sees the reports, the policy does nothing")
    return warnings


def report_authorization_name(domain: str, report_domain: str) -> str:
    """Where report_domain authorises reports about domain (RFC 7489 §7.1)."""
    return f"{domain}._report._dmarc.{report_domain}"


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@functools.lru_cache(maxsize=65536)
def organizational_domain(domain: str) -> str:
    """The Organizational Domain of a name (RFC 7489 §3.2): the public suffix plus one
    label, from the Public Suffix List (publicsuffixlist, loaded on first use); cached
    per name (alignment asks it for every sender of every domain)."""
    name = names.normalize(domain)
    return str(_public_suffixes().privatesuffix(name) or name)


#: RFC 9989 §4.10.1: a name of more labels is shortened to this many before the walk.
TREE_WALK_LABELS = 8


def policy_names(domain: str) -> tuple[str, ...]:
    """Where a receiver looks for the policy of a From domain, in order: the DNS tree
    walk of DMARCbis (RFC 9989 §4.10.1): ``_dmarc.<domain>``, then each parent (a long
    name first shortened to 8 labels), the first record found applying; it finds what
    RFC 7489's Organizational-Domain fallback (§6.6.3) finds, and the intermediate
    parents too. The walk stops above the top-level domain's child (no ``_dmarc.<tld>``
    query: public-suffix operators' records are out of scope here)."""
    labels = names.normalize(domain).split(".")
    walk = [labels]
    if len(labels) > TREE_WALK_LABELS:
        labels = labels[-TREE_WALK_LABELS:]
        walk.append(labels)
    while len(labels) > 2:
        labels = labels[1:]
        walk.append(labels)
    return tuple(dict.fromkeys(record_name(".".join(parts)) for parts in walk))


def aligned(identifier_domain: str, from_domain: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1): strict needs the same name, relaxed the
    same Organizational Domain."""
    a, b = names.normalize(identifier_domain), names.normalize(from_domain)
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The DMARC result of one message (RFC 7489 §6.6.2): pass when an authenticated
    identifier (SPF's MAIL FROM domain, a DKIM d=) passes *and* aligns with From."""

    result: str  # pass | fail | none (no policy record)
    policy: str | None
    spf_aligned: bool
    dkim_aligned: bool
    reason: str


def evaluate(
    from_domain: str,
    record: str | None,
    *,
    spf_result: str,
    spf_domain: str,
    dkim_domains: Iterable[str],
) -> Verdict:
    """Evaluate DMARC for one message from its authentication results.

    ``record`` is the policy record found for ``from_domain`` (or its Organizational
    Domain, RFC 7489 §6.6.3); ``dkim_domains`` the d= of every *passing* signature.
    """
    if record is None:
        return Verdict("none", None, False, False, f"no DMARC record for {from_domain}")
    tags = parse(record)
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, tags.get("aspf", "r"))
    dkim_ok = any(aligned(d, from_domain, tags.get("adkim", "r")) for d in dkim_domains)
    reasons = [
        f"SPF {spf_result} for {spf_domain or '(empty MAIL FROM)'}, {'aligned' if spf_ok else 'not aligned'} (aspf={tags.get('aspf', 'r')})",
        f"DKIM d={','.join(dkim_domains) or '(no passing signature)'}, {'aligned' if dkim_ok else 'not aligned'} (adkim={tags.get('adkim', 'r')})",
    ]
    return Verdict("pass" if spf_ok or dkim_ok else "fail", tags.get("p"), spf_ok, dkim_ok, "; ".join(reasons))
