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

    def with_gateway_key(self, public_key: str) -> Plan:
        """The same plan with the gateway's DKIM public key filled in."""
        value = dkim.txt_value(public_key)
        records = tuple(replace(r, content=value, needs_gateway_key=False) if r.needs_gateway_key else r for r in self.records)
        return replace(self, records=records, gateway_key=public_key)


def build(stack: MailDomain, gateway_key: str | None = None) -> Plan:
    """The plan of a declaration; PlanError (every broken rule, each at its key).

    ``gateway_key`` is the gateway's DKIM public key (PEM or base64). Without it the
    gateway's DKIM TXT carries ``dkim.PENDING_KEY`` and ``needs_gateway_key`` is set,
    so the Pulumi component fills it from the generated key.
    """
    zones = facts.managed_zones(stack)
    records = all_records(stack, gateway_key, zones)
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
