"""What the mailstack policies know besides the resource under review.

A policy pack runs in its own process. It sees resource inputs, its own policy config
(``pulumi preview --policy-pack-config FILE``), and — Pulumi hands the stack's config to
policy packs in ``PULUMI_CONFIG`` — the ``mailstack:`` namespace of the stack. This
module turns those into the declaration (``MailDomain``), the ``allowDelete`` flag and
the records the previous deployment planned, so the policies in ``mailstack.policy.policies``
stay pure rule applications.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError

from mailstack import plan
from mailstack.core import names
from mailstack.core.errors import MailstackError
from mailstack.core.record import Record
from mailstack.plan import Plan
from mailstack.policy import resources as dns_resources

#: Environment variable naming a JSON file of the previous deployment's records (the
#: ``records`` stack output, or ``mailstack records --format json`` of the base branch).
PREVIOUS_RECORDS_ENV = "MAILSTACK_PREVIOUS_RECORDS"
#: Content of a record whose value the engine does not know yet (preview).
UNKNOWN = "<unknown during preview>"


def declared_plan() -> Plan | None:
    """The plan of the stack's declaration from the engine's config; None when none is
    visible.

    Raises MailstackError (ConfigErrors) when the declaration is invalid: the program
    fails on it too, and the policy says so instead of guessing.
    """
    from mailstack.config.stack import from_config
    from mailstack.providers import (
        engine_config,  # imports pulumi: keep it out of module import
    )

    raw = engine_config.read_namespace()
    if not raw:
        return None
    return plan.build(from_config(raw))


def allow_delete(config: Mapping[str, Any], declared: Plan | None) -> bool:
    """``allowDelete`` from the policy config, else ``mailstack:dns.allowDelete``."""
    value = config.get("allowDelete")
    if isinstance(value, bool):
        return value
    return bool(declared and declared.stack.dns.allow_delete)


def previous_records(config: Mapping[str, Any]) -> list[Record] | None:
    """The records the previous deployment planned, None when not given.

    From the policy config (``previousRecords``: the JSON list, or
    ``previousRecordsFile``: a path) or the ``MAILSTACK_PREVIOUS_RECORDS`` file.
    """
    items: Any = config.get("previousRecords")
    if items is None:
        path = config.get("previousRecordsFile") or os.environ.get(PREVIOUS_RECORDS_ENV)
        if not path:
            return None
        try:
            items = json.loads(Path(str(path)).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise MailstackError(f"previous records {path}: {err}") from err
    if not isinstance(items, list):
        raise MailstackError("previous records must be a JSON list of records")
    try:
        return [Record.from_json(item) for item in items]
    except (ValueError, TypeError) as err:
        raise MailstackError(f"previous records: {err}") from err


@dataclass(frozen=True, slots=True)
class StackRecord:
    """One record of the stack, with the URN of the resource that publishes it."""

    record: Record
    urn: str
    known: bool = True


def stack_records(resources: Iterable[PolicyResource]) -> list[StackRecord]:
    """Every record the stack's DNS record resources publish.

    A record whose content the engine does not know yet (the gateway DKIM key during
    a first preview) still counts by name and type, with an UNKNOWN content, so the
    presence and CNAME rules can see it.
    """
    found: list[StackRecord] = []
    for resource in resources:
        try:
            records = dns_resources.to_records(resource.resource_type, resource.props)
        except UnknownValueError:
            records = _partly_known(resource)
            found += [StackRecord(r, resource.urn, known=False) for r in records]
            continue
        except dns_resources.RecordInputError:
            # the record-values-parse policy reports it on the resource; the rest counts
            records = dns_resources.parsable_records(resource.resource_type, resource.props)
        found += [StackRecord(r, resource.urn) for r in records]
    return found


def _partly_known(resource: PolicyResource) -> list[Record]:
    try:
        if not dns_resources.is_dns_record(resource.resource_type, resource.props):
            return []
        if dns_resources.is_record_list(resource.props):
            return [_item_partly_known(item) for item in resource.props["records"] or ()]
        name, rtype = str(resource.props["name"]), str(resource.props["type"])
    except UnknownValueError:
        return []
    return [Record(names.normalize(name), rtype.upper(), UNKNOWN, 0)]


def _item_partly_known(item: Mapping[str, Any]) -> Record:
    """One record of the RFC 2136 resource: its value may wait for the generated key."""
    name, rtype = names.normalize(str(item["name"])), str(item["type"]).upper()
    try:
        return dns_resources.to_records(dns_resources.DYNAMIC_PREFIX, {"name": name, "type": rtype, "ttl": item["ttl"], "values": [item["value"]]})[0]
    except (UnknownValueError, dns_resources.RecordInputError):
        return Record(name, rtype, UNKNOWN, 0)
