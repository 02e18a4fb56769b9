"""The ``Record`` value: one DNS record as every part of mailstack sees it.

The plan produces Records, the providers publish them, the policy pack rebuilds them
from resource inputs and the checks compare them with what DNS serves, so equality
means the same thing everywhere: name, type, content, TTL and priority.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mailstack.core.names import normalize

#: A key path inside the ``mailstack:`` namespace: ("gateways", 1, "ipv4").
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Record:
    """One DNS record.

    ``name`` is the FQDN without trailing dot, lower case. ``content`` is the plain
    value: TXT unquoted and unsplit, MX/CNAME targets without trailing dot, MX priority
    kept apart in ``priority`` (None where it does not apply). Providers render their
    own wire or API forms from this (see ``mailstack.core.txt`` and ``zonefile``).
    """

    name: str
    type: str
    content: str
    ttl: int
    priority: int | None = None
    #: What the record is for (spf, dkim, dmarc, mx, ...): lets policies and checks pick
    #: the rule that applies without re-parsing. Not part of the record's identity.
    purpose: str = field(default="", compare=False)
    #: The content is derived from the gateway's DKIM public key, which Pulumi generates.
    needs_gateway_key: bool = field(default=False, compare=False)
    #: The declaration key a user changes to change this record (``("dkim", "selector")``):
    #: a plan problem about the record names that key. Not part of its identity.
    origin: KeyPath = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """A stable, unique identifier used for Pulumi resource names and diffs.

        Unique within a plan: a name holds at most one record of each type, except MX,
        where several hosts may share a priority (RFC 5321 §5.1 load sharing), so the
        MX key carries the target too, and TLSA (a key rollover publishes two) the
        start of its data.
        """
        suffix = f"-{self.priority}" if self.priority is not None else ""
        if self.type == "MX":
            suffix += f"-{self.content}"
        if self.type == "TLSA":
            suffix += f"-{self.content.split()[-1][:16]}"
        return f"{self.type.lower()}-{self.name}{suffix}"

    @property
    def value(self) -> str:
        """The content as people read it: ``10 mx1.example.com`` for MX."""
        return self.content if self.priority is None else f"{self.priority} {self.content}"

    def as_json(self) -> dict[str, object]:
        """The documented JSON shape of ``mailstack records --format json``."""
        return {
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "ttl": self.ttl,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, item: object) -> Record:
        """The inverse of ``as_json`` (a previous deployment's ``records`` output);
        ValueError when ``item`` is not such a mapping."""
        if not isinstance(item, Mapping) or not {"name", "type", "content"} <= set(item):
            raise ValueError(f"{str(item)[:80]!r} is not a record (name, type, content, ttl, priority)")
        priority = item.get("priority")
        return cls(
            normalize(str(item["name"])),
            str(item["type"]).upper(),
            str(item["content"]),
            int(item.get("ttl") or 0),
            None if priority is None else int(priority),
        )
