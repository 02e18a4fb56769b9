"""Property tests: TXT splitting/quoting round-trips, and for any declaration the config
accepts, the planned set never has two SPF records at a name or a CNAME beside another
record (and never a crash instead of a config error)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack import plan as planning
from mailstack.config import stackfile
from mailstack.config.stack import from_config
from mailstack.core import txt, zonefile
from mailstack.core.errors import ConfigErrors
from mailstack.core.model import MailDomain, SenderKind
from mailstack.core.record import Record
from mailstack.plan.records import order_key
from mailstack.rules import spf
from tests import project
from tests.project import planned as plan

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=1200)


def load(declaration: dict[str, Any]) -> MailDomain:
    """A declaration as every command reads it: its keys validated, then its plan."""
    stack = from_config(declaration)
    planning.build(stack)
    return stack


@given(PRINTABLE)
def test_split_round_trips(value: str) -> None:
    chunks = txt.split(value)
    assert txt.join(chunks) == value
    assert all(len(c.encode()) <= 255 for c in chunks)
    assert all(len(c) == 255 for c in chunks[:-1]), "only the last string may be short"


@given(PRINTABLE)
def test_quoted_round_trips(value: str) -> None:
    quoted = txt.quoted(value)
    assert txt.unquote(quoted) == value
    assert txt.is_cloudflare_form(quoted)
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, quoted)
    strings = rdata.strings  # type: ignore[attr-defined]
    assert b"".join(strings).decode() == value
    assert all(len(s) <= 255 for s in strings)


def _mailjet_key() -> str:
    sender = stackfile.load(project.stack_path("odoo-sh")).sender(SenderKind.MAILJET)
    assert sender is not None and sender.dkim_key
    return sender.dkim_key


KEY = _mailjet_key()
PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
DOMAIN = "example.com"
# Pools chosen so collisions are likely: selectors of other senders, gateways at the
# inbound subdomain, alias domains equal to the inbound name.
LABELS = ["mail", "inbox", "odoo", "mx"]
SELECTORS = ["mailstack", "odoo", "google", "mailjet", "selector1", "s2026"]
HOSTS = ["mail.example.com", "mx1.example.com", "mx2.example.com", "relay.provider.example", "inbox.example.com"]
ALIASES = ["mail.example.com", "brand.example", "shop.example.com", "inbox.brand.example"]
SPF_TERMS = ["ip4:192.0.2.1", "ip6:2001:db8::1", "include:spf.vendor.example", "a", "mx", "include:_spf.odoo.com", "exists:x.example"]


@st.composite
def declarations(draw: st.DrawFn) -> dict[str, Any]:
    hosting = draw(st.sampled_from(["online", "sh", "onpremise"]))
    odoo: dict[str, Any] = {"hosting": hosting, "database": "db", "url": "https://odoo.example.com"}
    # Mostly consistent declarations (so the plan is reached), sometimes not (so the
    # error branch is exercised too).
    consistent = draw(st.integers(0, 9)) > 0
    gateways = [
        {"hostname": host, "ipv4": f"192.0.2.{i + 10}", "priority": draw(st.sampled_from([10, 10, 20, 30]))}
        for i, host in enumerate(draw(st.lists(st.sampled_from(HOSTS), max_size=3, unique=True)))
    ]
    outbound: list[Any] = []
    for kind in draw(st.lists(st.sampled_from(["odoo", "gateway", "mailjet", "google", "microsoft", "spf"]), max_size=5, unique=True)):
        if kind in ("mailjet", "google"):
            sender: dict[str, Any] = {"type": kind}
            if draw(st.booleans()):
                sender["dkimKey"] = KEY
            if draw(st.booleans()):
                sender["dkimSelector"] = draw(st.sampled_from(SELECTORS))
            outbound.append(sender)
        elif kind == "microsoft":
            outbound.append({"type": "microsoft", "tenant": "contoso"})
        elif kind == "spf":
            outbound.append({"spf": " ".join(draw(st.lists(st.sampled_from(SPF_TERMS), min_size=1, max_size=12)))})
        else:
            outbound.append(kind)
    mode = draw(st.sampled_from(["odoo-mx", "gateway", "forward", "imap", "none"]))
    if consistent:
        if hosting == "onpremise":
            outbound = [s for s in outbound if s != "odoo"]
            mode = "gateway" if mode == "odoo-mx" else mode
        if ("gateway" in outbound or mode == "gateway") and not gateways:
            gateways = [{"hostname": "mx1.example.com", "ipv4": "192.0.2.9"}]
    inbound: dict[str, Any] = {"mode": mode}
    if mode == "odoo-mx":
        inbound["subdomain"] = draw(st.sampled_from(LABELS))
        inbound["record"] = draw(st.sampled_from(["mx", "cname"]))
    elif mode in ("forward", "imap"):
        inbound["mx"] = draw(st.sampled_from(["google", "microsoft", [{"host": draw(st.sampled_from(HOSTS)), "priority": 5}]]))
        if draw(st.booleans()):
            inbound["subdomain"] = draw(st.sampled_from(LABELS))
    declaration: dict[str, Any] = {
        "domain": DOMAIN,
        "odoo": odoo,
        "outbound": outbound,
        "inbound": inbound,
        "gateways": gateways,
        "aliasDomains": draw(st.lists(st.sampled_from(ALIASES), max_size=2, unique=True)),
        "dkim": {"selector": draw(st.sampled_from(SELECTORS))},
    }
    if draw(st.booleans()):
        declaration["dmarc"] = {"policy": "reject", "rua": [draw(st.sampled_from(["mailto:d@example.com", "mailto:d@brand.example", "mailto:d@vendor.example"]))]}
    if draw(st.booleans()):
        declaration["dns"] = {"ttl": draw(st.sampled_from([1, 300, 3600]))}
    if mode != "none" and draw(st.booleans()):
        declaration["mtaSts"] = True
        declaration["tlsRpt"] = {"rua": ["mailto:tls@example.com"]}
    return declaration


def _assert_valid_set(records: list[Record]) -> None:
    by_name: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_name[record.name].append(record)
        assert record.name == record.name.lower() and not record.name.endswith(".")
        if record.type == "TXT":
            assert all(len(s) <= 255 for s in txt.split(record.content))
        if record.type in ("MX", "CNAME"):
            assert record.content == "." or not record.content.endswith(".")
        zonefile.rdata(record)  # dnspython accepts the rdata
    for name, at_name in by_name.items():
        spf_records = [r for r in at_name if r.type == "TXT" and spf.is_spf(r.content)]
        assert len(spf_records) <= 1, f"{name}: two SPF records {spf_records}"
        for record in spf_records:
            assert spf.lookup_count(spf.parse(record.content)) <= spf.LOOKUP_LIMIT
        if any(r.type == "CNAME" for r in at_name):
            assert len(at_name) == 1, f"{name}: CNAME beside {at_name}"
    keys = Counter(r.key for r in records)
    assert all(n == 1 for n in keys.values()), f"duplicate resource keys {keys}"
    assert records == sorted(set(records), key=order_key)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declarations())
def test_accepted_declarations_plan_a_valid_record_set(declaration: dict[str, Any]) -> None:
    try:
        stack = load(declaration)
    except ConfigErrors as err:
        assert err.errors and all(str(e).startswith("mailstack:") for e in err.errors)
        return
    _assert_valid_set(plan(stack))
    with_key = plan(stack, PEM)
    _assert_valid_set(with_key)
    assert not any(r.needs_gateway_key for r in with_key)


def test_generator_reaches_both_outcomes() -> None:
    """The property above is only meaningful if both branches are exercised."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, database=None)
    @given(declarations())
    def sample(declaration: dict[str, Any]) -> None:
        try:
            load(declaration)
            outcomes["ok"] += 1
        except ConfigErrors as err:
            outcomes["error"] += 1
            if any("CNAME beside" in str(e) or "SPF records" in str(e) or "different" in str(e) for e in err.errors):
                outcomes["conflict"] += 1

    sample()
    assert outcomes["ok"] > 10 and outcomes["error"] > 10 and outcomes["conflict"] > 0, outcomes


@pytest.mark.parametrize("selector", ["odoo", "selector1"])
def test_gateway_selector_colliding_with_a_cname_sender_is_refused(selector: str) -> None:
    senders: list[Any] = ["odoo"] if selector == "odoo" else [{"type": "microsoft", "tenant": "contoso"}]
    with pytest.raises(ConfigErrors, match=f"{selector}._domainkey.example.com has a CNAME beside other records"):
        load(
            {
                "domain": DOMAIN,
                "odoo": {"hosting": "online", "database": "db"},
                "outbound": [*senders, "gateway"],
                "gateways": [{"hostname": "mx1.example.com", "ipv4": "192.0.2.1"}],
                "gateway": {"mailgate": {"url": "https://db.odoo.com", "database": "db"}},
                "dkim": {"selector": selector},
                "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
            }
        )


# --- no traceback for any declaration ---------------------------------------------------

_FIELDS = [
    "type", "mode", "subdomain", "record", "mx", "host", "priority", "hostname", "ipv4", "ipv6", "spf",
    "dkimKey", "dkimSelector", "tenant", "selector", "bits", "policy", "rua", "ruf", "pct", "fo", "zone",
    "ttl", "provider", "server", "port", "tsigKeyName", "aliasZones", "hosting", "database", "url", "ssh",
    "user", "all", "maxAge", "aliases", "acceptAll", "mailgate",
]
_ATOMS = st.sampled_from(
    ["odoo", "gateway", "online", "onpremise", "sh", "mx", "cname", "none", "google", "microsoft", "example.com",
     "mail", "-all", "~all", "reject", "mailto:a@example.com", "192.0.2.1", "2001:db8::1", "rfc2136", "true"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | _ATOMS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(_FIELDS), children, max_size=4),
    max_leaves=12,
)
TOP_KEYS = ["domain", "aliasDomains", "odoo", "outbound", "inbound", "gateways", "dkim", "spf", "dmarc", "mtaSts", "tlsRpt", "dns", "gateway"]


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(TOP_KEYS), JSON_VALUES, max_size=4))
def test_any_declaration_is_a_model_or_config_errors(overrides: dict[str, Any]) -> None:
    """Whatever a stack file holds, validation ends in a MailDomain or ConfigErrors that
    name their keys: never another exception (the CLI would show a traceback)."""
    declaration = {
        "domain": DOMAIN,
        "odoo": {"hosting": "online", "database": "db"},
        "outbound": ["odoo"],
        "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
        **overrides,
    }
    try:
        stack = load(declaration)
    except ConfigErrors as err:
        assert err.errors and all(str(e).startswith("mailstack:") for e in err.errors)
        return
    _assert_valid_set(plan(stack))
