"""DMARC as RFC 9989 (DMARCbis, with RFC 9990 for aggregate and RFC 9991 for failure
reports) defines it, written once: build the record from the stack's tags, parse and
validate a published one, say which tags DMARCbis removed, and find a domain's policy
and Organizational Domain by the DNS tree walk (§4.10) from the answers a caller
fetched (this module does no I/O). The Public Suffix List stays only for offline
planning, where no DNS can be asked (``organizational_domain``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.core import names
from mailstack.core.errors import RuleError, quote

POLICIES = ("none", "quarantine", "reject")
ALIGNMENTS = ("r", "s")
FO_VALUES = frozenset({"0", "1", "d", "s"})
#: The tags of RFC 9989 §4.7; any other tag is ignored by receivers (§4.7: "unknown
#: tags MUST be ignored").
KNOWN_TAGS = ("v", "p", "sp", "np", "psd", "t", "rua", "ruf", "adkim", "aspf", "fo")
#: Tags of RFC 7489 that RFC 9989 removed, with what replaces them (RFC 9989 §4.7 and
#: Appendix "Changes from RFC 7489"): receivers ignore them now.
REMOVED_TAGS = {
    "pct": "t=y (test mode) replaces pct=0; any other percentage is no longer honoured: drop pct",
    "rf": "failure reports have one format (RFC 9991): drop rf",
    "ri": "aggregate reports are sent daily (RFC 9990): drop ri",
}
PSD_VALUES = ("y", "n", "u")
TEST_VALUES = ("y", "n")
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
    fo: str | None = None,
    testing: bool = False,
    nonexistent_policy: str | None = None,
) -> str:
    """The DMARC TXT value; tags in a fixed order so the same stack gives the same bytes.

    Defaults (adkim=r, aspf=r, t=n) are left out: shorter, and what receivers assume.
    Never a tag RFC 9989 removed (pct, rf, ri): ``testing`` is DMARCbis' ``t=y``.
    """
    tags = {"v": "DMARC1", "p": policy}
    if subdomain_policy:
        tags["sp"] = subdomain_policy
    if nonexistent_policy:
        tags["np"] = nonexistent_policy
    if testing:
        tags["t"] = "y"
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
    parsed = parse(text)
    validate(parsed)
    assert not removed_tags(parsed)  # the rule the policy pack and the checks apply
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
    """Check the values of the tags RFC 9989 defines; raise DmarcError on the first
    invalid one, return notes: an unknown tag ("unknown tag x: ignored"), a removed one
    ("removed tag pct: ..."), p=none without rua. A removed or unknown tag's value is
    not judged (receivers ignore the tag)."""
    warnings: list[str] = []
    if "p" not in tags:
        raise DmarcError("the p= tag is required (RFC 9989 §4.7)")
    for name in ("p", "sp", "np"):
        if name in tags and tags[name] not in POLICIES:
            raise DmarcError(f"{name}={quote(tags[name])} is not one of {', '.join(POLICIES)}")
    for name in ("adkim", "aspf"):
        if name in tags and tags[name] not in ALIGNMENTS:
            raise DmarcError(f"{name}={quote(tags[name])} is not r or s")
    if "psd" in tags and tags["psd"] not in PSD_VALUES:
        raise DmarcError(f"psd={quote(tags['psd'])} is not y, n or u")
    if "t" in tags and tags["t"] not in TEST_VALUES:
        raise DmarcError(f"t={quote(tags['t'])} is not y or n")
    for name in ("rua", "ruf"):
        for uri in uris(tags, name):
            check_uri(uri)
    if "fo" in tags:
        check_fo(tags["fo"], tag="fo=")
    for name in tags:
        if name in REMOVED_TAGS:
            warnings.append(f"removed tag {name} (RFC 9989): {REMOVED_TAGS[name]}")
        elif name not in KNOWN_TAGS:
            warnings.append(f"unknown tag {name}: ignored by receivers (RFC 9989 §4.7)")
    if tags["p"] == "none" and not tags.get("rua"):
        warnings.append("p=none without rua: nobody sees the reports, the policy does nothing")
    return warnings


def removed_tags(tags: dict[str, str]) -> list[str]:
    """The tags of a record that RFC 9989 removed (pct, rf, ri), in record order."""
    return [name for name in tags if name in REMOVED_TAGS]


def without_removed(tags: dict[str, str]) -> str:
    """The record text with the removed tags dropped (``pct=0`` becomes ``t=y``): the
    fix for a record that still carries them."""
    kept = {k: v for k, v in tags.items() if k not in REMOVED_TAGS}
    if tags.get("pct") == "0" and "t" not in kept:
        kept["t"] = "y"
    return "; ".join(f"{k}={v}" for k, v in kept.items())


def testing(tags: dict[str, str]) -> bool:
    """``t=y``: the Domain Owner is testing; receivers do not apply the policy
    (RFC 9989 §4.7). (RFC 7489's ``pct=0`` meant that; DMARCbis receivers ignore pct.)"""
    return tags.get("t") == "y"


def report_authorization_name(domain: str, report_domain: str) -> str:
    """Where report_domain authorises reports about domain (RFC 7489 §7.1)."""
    return f"{domain}._report._dmarc.{report_domain}"


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@functools.lru_cache(maxsize=65536)
def organizational_domain(domain: str) -> str:
    """The Organizational Domain of a name for offline planning, where no DNS can be
    asked: the public suffix plus one label, from the Public Suffix List
    (publicsuffixlist, loaded on first use; RFC 7489 §3.2). Where DNS can be asked, the
    checks use the tree walk (``discover``), as RFC 9989 §4.10 receivers do. Cached per
    name (alignment asks it for every sender of every domain)."""
    name = names.normalize(domain)
    return str(_public_suffixes().privatesuffix(name) or name)


#: RFC 9989 §4.10.1: a name of more labels is shortened to this many after the first
#: query, so a walk makes at most 8 queries (the name, then 7 labels down to 1).
TREE_WALK_LABELS = 7
#: RFC 9989 §4.10.1: the most DNS queries one tree walk makes.
TREE_WALK_QUERIES = 8


def walk(domain: str) -> tuple[str, ...]:
    """The domains the DNS tree walk (RFC 9989 §4.10.1) asks for ``_dmarc`` records, in
    order: the name itself; then, when it has more than 7 labels, its last 7; then one
    label less each step, down to the top-level domain (a PSD may publish there).
    At most ``TREE_WALK_QUERIES`` names."""
    labels = names.normalize(domain).split(".")
    steps = [labels]
    if len(labels) > TREE_WALK_LABELS:
        labels = labels[-TREE_WALK_LABELS:]
        steps.append(labels)
    while len(labels) > 1:
        labels = labels[1:]
        steps.append(labels)
    return tuple(dict.fromkeys(".".join(parts) for parts in steps))


def policy_names(domain: str) -> tuple[str, ...]:
    """Where a receiver looks for the policy of a From domain, in order: ``_dmarc.`` of
    each name of the tree walk (``walk``); which record applies is ``discover``'s decision."""
    return tuple(record_name(name) for name in walk(domain))


def single_record(texts: Iterable[str]) -> str | None:
    """The record a walk step finds at one name (RFC 9989 §4.10.1 steps 2 and 7): TXT
    values not starting with v=DMARC1 are discarded; more than one left is none."""
    records = [t for t in texts if is_dmarc(t)]
    return records[0] if len(records) == 1 else None


def psd(record: str) -> str:
    """The record's ``psd=`` value (y, n or u, the default), u when it does not parse."""
    try:
        return parse(record).get("psd", "u")
    except DmarcError:
        return "u"


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the tree walk decided for one name (RFC 9989 §4.10): the policy record that
    applies (``policy_domain`` is where it was found, None when no record applies) and
    the Organizational Domain."""

    domain: str
    policy_domain: str | None
    record: str | None
    organizational_domain: str

    @property
    def inherited(self) -> bool:
        """True when the policy comes from a parent (sp=/np= apply, not p=)."""
        return self.policy_domain is not None and self.policy_domain != self.domain


def discover(domain: str, found: Mapping[str, str | None]) -> Discovery:
    """Decide policy and Organizational Domain from the walk's answers.

    ``found`` maps each name of ``walk(domain)`` to the single DMARC record found there
    (``single_record``) or None; a name missing from it was not needed (the walk stops
    at a ``psd=y``/``psd=n`` record, see ``decided``).

    Organizational Domain (RFC 9989 §4.10.2): the first name with ``psd=n``; for a
    ``psd=y`` name, the name one label below it on the way to ``domain`` (``domain``
    itself when it is the PSD); else the name with the fewest labels that has a record;
    else ``domain``. Policy (§4.10.1): the domain's own record; else the Organizational
    Domain's; else, below a PSD, the PSD's record. (A record at a name between the
    domain and its Organizational Domain does not apply to the domain: as RFC 7489,
    only the Author Domain and the Organizational Domain publish policy for it.)
    """
    domain = names.normalize(domain)
    labels = domain.split(".")
    organization: str | None = None
    public_suffix: str | None = None
    shortest: str | None = None
    for name in walk(domain):
        text = found.get(name)
        if text is None:
            continue
        tag = psd(text)
        if tag == "n":
            organization = name
            break
        if tag == "y":
            public_suffix = name
            depth = len(name.split("."))
            organization = domain if name == domain else ".".join(labels[-(depth + 1):])
            break
        shortest = name
    organization = organization or shortest or domain
    policy_domain = next((n for n in (domain, organization, public_suffix) if n and found.get(n)), None)
    return Discovery(domain, policy_domain, found.get(policy_domain) if policy_domain else None, organization)


def decided(domain: str, found: Mapping[str, str | None]) -> bool:
    """True when the names asked so far decide ``discover``: a psd=y/n record was found
    (the walk stops there) or every name of the walk was asked."""
    for name in walk(domain):
        if name not in found:
            return False
        text = found[name]
        if text is not None and psd(text) in ("y", "n"):
            return True
    return True


#: The tags a subdomain's policy is taken from, first found first (RFC 9989 §4.7).
SUBDOMAIN_TAGS = ("sp", "p")
NONEXISTENT_TAGS = ("np", "sp", "p")


def applied_tag(tags: Mapping[str, str], *, inherited: bool, nonexistent: bool = False) -> str:
    """The tag whose policy a receiver applies from a record's ``tags`` (RFC 9989 §4.7,
    §5.3 step 6): ``p`` for the domain that published it; for a subdomain the record is
    inherited by, ``sp`` and, when that subdomain does not exist, ``np`` — each falling
    back to the one after it (np -> sp -> p). Every check that asks which policy a
    subdomain gets asks here."""
    if not inherited:
        return "p"
    return next(t for t in (NONEXISTENT_TAGS if nonexistent else SUBDOMAIN_TAGS) if t in tags or t == "p")


def applied_policy(tags: Mapping[str, str], *, inherited: bool, nonexistent: bool = False) -> str:
    """The policy ``applied_tag`` names."""
    return tags[applied_tag(tags, inherited=inherited, nonexistent=nonexistent)]


def stricter_or_equal(policy: str, than: str) -> bool:
    """True when ``policy`` asks at least as much as ``than`` (none < quarantine < reject)."""
    return POLICIES.index(policy) >= POLICIES.index(than)


def with_tag(tags: Mapping[str, str], name: str, value: str) -> str:
    """The record text of ``tags`` with ``name=value`` set (after ``sp``/``p`` when new):
    the published record a fix asks for, its other tags kept in their order."""
    items = [(k, v) for k, v in tags.items() if k != name]
    at = max(i for i, (k, _) in enumerate(items) if k in ("p", "sp")) + 1
    items.insert(at, (name, value))
    return "; ".join(f"{k}={v}" for k, v in items)


def aligned(identifier_domain: str, from_domain: str, mode: str, org: Callable[[str], str] | None = None) -> bool:
    """Identifier alignment (RFC 9989 §4.4): strict needs the same name, relaxed the
    same Organizational Domain — by ``org`` (the tree walk, where the caller can ask
    DNS), else by the Public Suffix List (offline)."""
    a, b = names.normalize(identifier_domain), names.normalize(from_domain)
    if mode == "s":
        return a == b
    org = org or organizational_domain
    return org(a) == org(b)


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
    org: Callable[[str], str] | None = None,
) -> Verdict:
    """Evaluate DMARC for one message from its authentication results.

    ``record`` is the policy record found for ``from_domain`` (or its Organizational
    Domain, RFC 7489 §6.6.3); ``dkim_domains`` the d= of every *passing* signature.
    """
    if record is None:
        return Verdict("none", None, False, False, f"no DMARC record for {from_domain}")
    tags = parse(record)
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, tags.get("aspf", "r"), org)
    dkim_ok = any(aligned(d, from_domain, tags.get("adkim", "r"), org) for d in dkim_domains)
    reasons = [
        f"SPF {spf_result} for {spf_domain or '(empty MAIL FROM)'}, {'aligned' if spf_ok else 'not aligned'} (aspf={tags.get('aspf', 'r')})",
        f"DKIM d={','.join(dkim_domains) or '(no passing signature)'}, {'aligned' if dkim_ok else 'not aligned'} (adkim={tags.get('adkim', 'r')})",
    ]
    return Verdict("pass" if spf_ok or dkim_ok else "fail", tags.get("p"), spf_ok, dkim_ok, "; ".join(reasons))
