"""Resource inputs back to Records: the policy pack sees exactly the plan's records,
whatever the provider's form (Cloudflare's quoted TXT, RFC 2136 presentation rdata)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstack.config import stackfile
from mailstack.core import zonefile
from mailstack.core.record import Record
from mailstack.policy import resources as dns_resources
from mailstack.providers.cloudflare import cloudflare_content
from mailstack.rules import protection
from tests import project
from tests.project import planned as plan

CF = dns_resources.CLOUDFLARE_RECORD
#: Any dynamic resource carrying one record set (``values``) is read as records too.
DYNAMIC = "pulumi-python:dynamic/some:RecordSet"
RFC2136 = "pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords"
PLANNED = [r for path in project.all_stacks() for r in plan(stackfile.load(path))]


def cloudflare_inputs(record: Record) -> dict[str, object]:
    """What the engine shows for a Cloudflare record: camelCase, floats."""
    inputs: dict[str, object] = {"zoneId": "z", "name": record.name, "type": record.type, "content": cloudflare_content(record),
                                 "ttl": float(record.ttl), "proxied": False}
    if record.priority is not None:
        inputs["priority"] = float(record.priority)
    return inputs


@pytest.mark.parametrize("record", PLANNED, ids=lambda r: r.key)
def test_every_planned_record_round_trips_through_both_providers(record: Record) -> None:
    assert dns_resources.to_records(CF, cloudflare_inputs(record)) == [record]
    values = {"name": record.name, "type": record.type, "ttl": record.ttl, "values": [zonefile.rdata_text(record)], "zone": "z"}
    assert dns_resources.to_records(DYNAMIC, values) == [record]


@pytest.mark.parametrize("path", project.all_stacks(), ids=lambda p: p.name)
def test_a_stack_round_trips_through_the_rfc2136_record_list(path) -> None:  # type: ignore[no-untyped-def]
    from mailstack.rfc2136.resource import record_maps

    records = plan(stackfile.load(path))
    props = {"zones": ["z"], "records": record_maps(records, lambda _: "z"), "server": "192.0.2.53"}
    assert sorted(dns_resources.to_records(RFC2136, props)) == sorted(records)
    props["records"][0] = {**props["records"][0], "type": "MX", "value": "not an mx"}
    assert len(dns_resources.parsable_records(RFC2136, props)) == len(records) - 1


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=1200))
def test_any_ascii_txt_round_trips(text: str) -> None:
    record = Record("x.example.com", "TXT", text, 300)
    assert dns_resources.to_records(CF, cloudflare_inputs(record)) == [record]


def test_other_resources_are_not_records() -> None:
    assert dns_resources.to_records("tls:index/privateKey:PrivateKey", {"name": "dkim", "type": "RSA"}) == []
    assert dns_resources.to_records("pulumi-python:dynamic:Resource", {"name": "x", "type": "y"}) == []
    with pytest.raises(dns_resources.RecordInputError, match="not valid rdata"):
        dns_resources.to_records(DYNAMIC, {"name": "a.example", "type": "MX", "values": ["mx.example."]})


@pytest.mark.parametrize(
    "record, purpose",
    [
        (Record("example.com", "MX", "mx.example.com", 300, 10), "mx"),
        (Record("example.com", "TXT", "v=spf1 -all", 300), "spf"),
        (Record("sel._domainkey.example.com", "TXT", "v=DKIM1; p=", 300), "dkim"),
        (Record("odoo._domainkey.example.com", "CNAME", "odoo._domainkey.odoo.com", 300), "dkim"),
        (Record("_dmarc.example.com", "TXT", "v=DMARC1; p=none", 300), "dmarc"),
        (Record("example.com", "TXT", "google-site-verification=abc", 300), None),
        (Record("mx1.example.com", "A", "192.0.2.1", 300), None),
    ],
)
def test_mail_purpose_and_protection(record: Record, purpose: str | None) -> None:
    assert protection.mail_purpose(record) == purpose
    assert protection.should_protect(record, allow_delete=False) is (purpose is not None)
    assert protection.should_protect(record, allow_delete=True) is False
