"""DNS record resources as the Pulumi engine shows them, turned back into Records.

The policy pack sees resource inputs, not our model: Cloudflare's
``cloudflare:index/dnsRecord:DnsRecord`` with camelCase inputs (``zoneId``, ``name``,
``type``, ``content`` in Cloudflare's quoted TXT form, ``ttl``/``priority`` as floats,
``proxied``), and the RFC 2136 resources, Pulumi dynamic resources: the one holding a
stack's records (``pulumi-python:dynamic/mailstack:Rfc2136ZoneRecords``, ``records``: a
list of ``{zone, name, type, ttl, value}``, value the rdata in presentation form), or
any ``pulumi-python:dynamic`` type carrying ``name``/``type``/``ttl`` and either
``values`` (rdata, one resource per record set) or ``content`` (plain) with ``priority``. Converting all of them into ``mailstack.core.model.Record`` lets every policy
apply the rule modules unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dns.exception

from mailstack.core import names, txt, zonefile
from mailstack.core.record import Record

CLOUDFLARE_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
DYNAMIC_PREFIX = "pulumi-python:dynamic"


class RecordInputError(ValueError):
    """Record inputs that do not describe a DNS record (e.g. rdata that does not parse)."""


def is_dns_record(resource_type: str, props: Mapping[str, Any]) -> bool:
    """True for a Cloudflare record, or a dynamic resource carrying record inputs."""
    if resource_type == CLOUDFLARE_RECORD:
        return True
    if resource_type.startswith(DYNAMIC_PREFIX):
        keys = set(iter(props))  # not `in`: the policy SDK's proxy raises on unknown values
        return {"name", "type"} <= keys and bool({"content", "values"} & keys) or is_record_list(props)
    return False


def is_record_list(props: Mapping[str, Any]) -> bool:
    """True for the RFC 2136 resource holding many records (``records``: a list of
    ``{zone, name, type, ttl, value}``, ``mailstack.rfc2136.resource``)."""
    return "records" in set(iter(props)) and "zones" in set(iter(props))


def is_cloudflare(resource_type: str) -> bool:
    """True when the content is in Cloudflare's form (TXT quoted and split)."""
    return resource_type == CLOUDFLARE_RECORD


def _number(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def raw_content(props: Mapping[str, Any]) -> str:
    """The ``content`` input as given (Cloudflare TXT still quoted)."""
    value = props.get("content")
    return value if isinstance(value, str) else ""


def to_records(resource_type: str, props: Mapping[str, Any]) -> list[Record]:
    """The Records a DNS record resource publishes; [] when it is not a record.

    Cloudflare TXT content is unquoted into the plain value; text that does not parse
    as quoted strings is kept as is (the Cloudflare-form policy reports it). MX/CNAME
    targets lose a trailing dot, like every Record name. Raises RecordInputError for
    RFC 2136 ``values`` that are not valid rdata.
    """
    if not is_dns_record(resource_type, props):
        return []
    if resource_type.startswith(DYNAMIC_PREFIX) and is_record_list(props):
        return [_from_item(item) for item in props.get("records") or ()]
    name, rtype = props.get("name"), props.get("type")
    if not isinstance(name, str) or not isinstance(rtype, str):
        return []
    name, rtype = names.normalize(name), rtype.upper()
    ttl = _number(props.get("ttl")) or 0
    if "values" in set(iter(props)) and not is_cloudflare(resource_type):
        return [_from_value(name, rtype, ttl, str(value)) for value in props.get("values") or ()]
    content = raw_content(props)
    if rtype == "TXT":
        if is_cloudflare(resource_type) or content.startswith('"'):
            try:
                content = txt.unquote(content)
            except ValueError:
                pass
    elif rtype in ("MX", "CNAME", "NS", "PTR") and content != ".":
        content = names.normalize(content)
    elif rtype == "TLSA" and isinstance(props.get("data"), Mapping):
        content = _tlsa_content(props["data"])
    priority = _number(props.get("priority")) if rtype in ("MX", "SRV", "URI") else None
    return [Record(name, rtype, content, ttl, priority)]


def _tlsa_content(data: Mapping[str, Any]) -> str:
    """Cloudflare's TLSA ``data`` block as the record's content (``3 1 1 <hex>``)."""
    fields = [data.get("usage"), data.get("selector"), data.get("matchingType", data.get("matching_type"))]
    numbers = [int(v) if isinstance(v, (int, float)) else v for v in fields]
    return " ".join(str(v) for v in [*numbers, str(data.get("certificate") or "").lower()])


def parsable_records(resource_type: str, props: Mapping[str, Any]) -> list[Record]:
    """Like ``to_records``, skipping the records that do not parse (the
    ``record-values-parse`` policy reports those): one bad value in the RFC 2136 record
    list must not hide the others from the stack policies."""
    if not (resource_type.startswith(DYNAMIC_PREFIX) and is_record_list(props)):
        try:
            return to_records(resource_type, props)
        except RecordInputError:
            return []
    found = []
    for item in props.get("records") or ():
        try:
            found.append(_from_item(item))
        except RecordInputError:
            continue
    return found


def _from_item(item: Mapping[str, Any]) -> Record:
    name, rtype = names.normalize(str(item.get("name"))), str(item.get("type")).upper()
    return _from_value(name, rtype, _number(item.get("ttl")) or 0, str(item.get("value")))


def _from_value(name: str, rtype: str, ttl: int, value: str) -> Record:
    try:
        return zonefile.from_text(name, rtype, ttl, value)
    except (dns.exception.DNSException, ValueError) as err:
        raise RecordInputError(f"{name} {rtype}: {value!r} is not valid rdata: {err}") from err
