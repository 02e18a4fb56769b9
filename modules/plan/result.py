"""The ``Plan`` value and ``build``: a declaration's records and derived facts, once.

A run computes the plan once and hands the value around; nothing downstream calls the
rule functions again to re-derive which names send mail or which hosts are MX, so the
gateway signs exactly the domains the plan publishes SPF and DKIM for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from mailstack.core.errors import ConfigError, PlanError
from mailstack.core.model import MailDomain, MxHost
from mailstack.core.record import Record
from mailstack.plan import conflicts, facts
from mailstack.plan.records import all_records, order_key
from mailstack.rules import dkim
from mailstack.rules.dkim_rotation import Rotation


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Everything one declaration publishes, and what was derived to decide it."""

    stack: MailDomain
    #: The records, sorted (``records.order_key``), each once.
    records: tuple[Record, ...]
    #: Per mail domain: the names mail is sent from (SPF, DKIM and signing).
    sending_names: Mapping[str, tuple[str, ...]]
    #: Per mail domain: its inbound MX set as declared.
    mx_hosts: Mapping[str, tuple[MxHost, ...]]
    #: The zones the records are written to.
    managed_zones: tuple[str, ...]
    #: The names the gateways receive mail for (inbound mode gateway).
    relay_domains: tuple[str, ...]
    #: The gateway's DKIM public key the plan was made with, None when Pulumi makes it.
    gateway_key: str | None = None
    #: The phase of a DKIM rotation (``dkim.previous``), when it was decided with the
    #: authoritative servers' answers (``rules.dkim_rotation.decide``); None otherwise.
    rotation: Rotation | None = None

    @property
    def signing_selector(self) -> str:
        """The selector OpenDKIM signs with: the rotation's decision, else — nothing
        observed — the previous selector while a rotation is declared (the key known to
        be published), else ``dkim.selector``."""
        if self.rotation is not None:
            return self.rotation.signing
        return self.stack.dkim.previous or self.stack.dkim.selector

    @property
    def domain(self) -> str:
        return self.stack.domain

    @property
    def signing_domains(self) -> tuple[str, ...]:
        """Every name mail is sent from: what OpenDKIM signs and ``from_filter`` lists."""
        return tuple(sorted({name for sending in self.sending_names.values() for name in sending}))

    @property
    def all_sending_names(self) -> tuple[str, ...]:
        """Every sending name, main domain's first, in declaration order."""
        return tuple(dict.fromkeys(name for domain in self.stack.domains for name in self.sending_names[domain]))

    def zone_of(self, name: str) -> str:
        """The zone a record name is written to."""
        return self.stack.dns.zone_of(name)

    @property
    def zones(self) -> dict[str, str]:
        """The zone of every record name."""
        return {r.name: self.zone_of(r.name) for r in self.records}

    def of_purpose(self, purpose: str) -> tuple[Record, ...]:
        """The records planned for one purpose (spf, dkim, dmarc, mx, ...)."""
        return tuple(r for r in self.records if r.purpose == purpose)

    @property
    def needs_gateway_key(self) -> bool:
        """True when a record waits for the gateway's generated DKIM key."""
        return any(r.needs_gateway_key for r in self.records)

    def with_gateway_key(self, public_key: str, selector: str | None = None) -> Plan:
        """The same plan with the gateway's DKIM public key of ``selector`` (default:
        ``dkim.selector``) filled in."""
        selector = selector or self.stack.dkim.selector
        value = dkim.txt_value(public_key)
        records = tuple(
            replace(r, content=value, needs_gateway_key=False) if r.needs_gateway_key and dkim.selector_of(r.name) == selector else r
            for r in self.records
        )
        if selector != self.stack.dkim.selector:
            return replace(self, records=records)
        return replace(self, records=records, gateway_key=public_key)

    def rotation_names(self) -> tuple[dict[str, str | None], list[str]]:
        """A declared rotation's key record names: the new selector's, each with the
        key it must carry (None while Pulumi generates it), and the previous one's."""
        new: dict[str, str | None] = {}
        old: list[str] = []
        dkim_options = self.stack.dkim
        for record in self.of_purpose("dkim"):
            selector = dkim.selector_of(record.name)
            if record.origin == ("dkim", "selector") and selector == dkim_options.selector:
                new[record.name] = None if record.needs_gateway_key else dkim.parse(record.content).public_key
            elif record.origin == ("dkim", "previous") and selector == dkim_options.previous:
                old.append(record.name)
        return new, old

    def with_rotation(self, rotation: Rotation) -> Plan:
        """The same plan with the rotation's decided phase (the signing selector)."""
        return replace(self, rotation=rotation)


def build(stack: MailDomain, gateway_key: str | None = None, previous_key: str | None = None) -> Plan:
    """The plan of a declaration; PlanError (every broken rule, each at its key).

    ``gateway_key`` is the gateway's DKIM public key (PEM or base64). Without it the
    gateway's DKIM TXT carries ``dkim.PENDING_KEY`` and ``needs_gateway_key`` is set,
    so the Pulumi component fills it from the generated key. ``previous_key`` is the
    key of ``dkim.previous`` while a rotation runs (docs/gateway.md), the same way.
    """
    zones = facts.managed_zones(stack)
    records = all_records(stack, gateway_key, zones, previous_key)
    problems = conflicts.find(records)
    problems += _unplanned_adoptions(stack, records)
    if problems:
        raise PlanError(_errors(problems), problems)
    return Plan(
        stack=stack,
        records=tuple(sorted(set(records), key=order_key)),
        sending_names={d: facts.sending_names(stack, d) for d in stack.domains},
        mx_hosts={d: facts.mx_hosts(stack, d) for d in stack.domains},
        managed_zones=zones,
        relay_domains=facts.relay_domains(stack),
        gateway_key=gateway_key,
    )


def _unplanned_adoptions(stack: MailDomain, records: list[Record]) -> list[conflicts.Problem]:
    """``dns.adopt`` names planned records by key; a key the plan lacks is a typo."""
    keys = sorted({r.key for r in records})
    return [
        conflicts.Problem("adopt-key", key, f" is not a record this stack plans (its keys: {', '.join(keys)})", ("dns", "adopt", key))
        for key, _ in stack.dns.adopt
        if key not in keys
    ]


#: Problems with the same text at several names (the SPF record is shared) are one error.
_MERGED = ("spf-budget", "spf-syntax")


def _errors(problems: list[conflicts.Problem]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    merged: dict[tuple[str, str, tuple[str | int, ...]], list[str]] = {}
    for problem in problems:
        if problem.kind in _MERGED:
            merged.setdefault((problem.kind, problem.text, problem.path), []).append(problem.subject)
        else:
            errors.append(ConfigError(problem.path, problem.message))
    for (_, text, path), subjects in merged.items():
        errors.append(ConfigError(path, f"{', '.join(subjects)}{text}"))
    return errors
