"""DKIM key rotation without a gap, written once: which phase a rotation is in, which
selector the gateway signs with, and when the previous key's record may go.

A receiver verifies a signature with the key record it finds at ``s=`` when the message
arrives. So the new key must be served by *every* authoritative server of the zone
before the gateway signs with it (a resolver may ask any of them), and the old key must
stay published after the switch for as long as mail signed with it may still arrive:
its record's TTL (caches) plus a margin for mail still queued (``dkim.retireMargin``;
Postfix retries a message for five days by default).

The phases, decided by ``decide`` from the stack, the DNS observed on every
authoritative server and the recorded switch time (``RotationState``):

- ``steady``: no rotation declared (``dkim.previous`` unset); sign with ``dkim.selector``.
- ``publish``: both keys planned; the new record is not yet served by every
  authoritative server, so the gateway keeps signing with ``dkim.previous``.
- ``switch``: the new record was seen on every authoritative server (the switch time is
  recorded then, once); the gateway signs with ``dkim.selector``; the old record stays.
- ``retire``: the switch time plus the old record's TTL plus the margin has passed; the
  old record may be deleted, which happens when ``dkim.previous`` is removed from the
  stack. Removing it earlier is refused (``retire_problem``).

Pure code: the DNS is read by ``mailstack.rfc2136.authoritative``, the state is kept
by the Pulumi resource (``providers.dkim_rotation``) or the lab's state directory.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mailstack.core.errors import RuleError
from mailstack.core.model import Dkim, MailDomain, SenderKind
from mailstack.core.names import InvalidName, label

#: The default margin after the old record's TTL (five days: Postfix's
#: ``maximal_queue_lifetime``, the longest a message signed before the switch waits).
DEFAULT_MARGIN = Dkim().retire_margin
#: The largest accepted ``dkim.retireMargin`` (one year).
MAX_MARGIN = 366 * 86400


class RotationError(RuleError):
    """A recorded rotation state that cannot be read."""


class Phase(str, Enum):
    STEADY = "steady"
    PUBLISH = "publish"
    SWITCH = "switch"
    RETIRE = "retire"


@dataclass(frozen=True, slots=True)
class ServerView:
    """What one authoritative server serves for the rotation's key records."""

    #: The server asked (``host@address`` or ``address:port``).
    server: str
    #: Key record names of the new selector this server does not serve (with the
    #: expected key when it is known).
    missing_new: tuple[str, ...] = ()
    #: Key record names of the previous selector this server still serves.
    old_published: tuple[str, ...] = ()
    #: The largest TTL seen on an old key record (0: none seen).
    old_ttl: int = 0
    #: Why this server could not be asked (then nothing it serves is known).
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """Every authoritative server's view, asked directly (no resolver cache between)."""

    servers: tuple[ServerView, ...]

    @property
    def new_everywhere(self) -> bool:
        """True when every authoritative server answered and serves every new record."""
        return bool(self.servers) and all(s.error is None and not s.missing_new for s in self.servers)

    @property
    def lacking(self) -> tuple[str, ...]:
        """The servers that do not (yet) serve every new record, or did not answer."""
        return tuple(s.server for s in self.servers if s.error is not None or s.missing_new)

    @property
    def old_anywhere(self) -> bool:
        return any(s.old_published for s in self.servers)

    @property
    def old_ttl(self) -> int:
        return max((s.old_ttl for s in self.servers), default=0)


@dataclass(frozen=True, slots=True)
class RotationState:
    """What a rotation must remember between runs: when the gateway switched, and when
    the old record may go (fixed at the switch: TTL and margin as they were then)."""

    selector: str
    previous: str
    switched_at: float | None = None
    retire_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"selector": self.selector, "previous": self.previous, "switchedAt": self.switched_at, "retireAt": self.retire_at}

    @classmethod
    def from_json(cls, data: Any) -> RotationState | None:
        """The state as ``as_json`` wrote it (None for an empty one); RotationError names
        the field that is wrong, so a hand-edited file is refused, not half-read."""
        if data is None or data == {}:
            return None
        if not isinstance(data, dict):
            raise RotationError("the DKIM rotation state is not a JSON object")
        try:
            selector, previous = label(data.get("selector")), label(data.get("previous"))
        except InvalidName as err:
            raise RotationError(f"the DKIM rotation state's selector: {err}") from None
        times: list[float | None] = []
        for key in ("switchedAt", "retireAt"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**33):
                raise RotationError(f"the DKIM rotation state's {key} is not a time in seconds since 1970")
            times.append(None if value is None else float(value))
        return cls(selector, previous, times[0], times[1])

    @classmethod
    def loads(cls, text: str) -> RotationState | None:
        try:
            return cls.from_json(json.loads(text) if text.strip() else None)
        except json.JSONDecodeError as err:
            raise RotationError(f"the DKIM rotation state is not JSON: {err}") from None


@dataclass(frozen=True, slots=True)
class Rotation:
    """The decision for one run."""

    phase: Phase
    #: The selector OpenDKIM signs with (SigningTable/KeyTable).
    signing: str
    #: The selectors whose key records the plan publishes.
    published: tuple[str, ...]
    #: The state to record after this run (None: no rotation).
    state: RotationState | None
    #: What happens next, in words (``mailstack plan``/``diff``, the check).
    next: str
    #: True when this decision makes the switch (the new key was just seen on every
    #: authoritative server; ``state`` records the switch time now): the gateway signs
    #: with the new key only once this decision is applied.
    switches_now: bool = False

    @property
    def retire_at(self) -> float | None:
        return self.state.retire_at if self.state else None

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value, "signing": self.signing, "published": list(self.published),
            "switchedAt": self.state.switched_at if self.state else None, "retireAt": self.retire_at, "next": self.next,
        }


def when(seconds: float) -> str:
    """A time as people and logs read it (UTC, ISO 8601)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(dkim: Dkim, ttl: int, observation: Observation | None, state: RotationState | None, now: float) -> Rotation:
    """The phase of the declared rotation.

    ``ttl`` is the TTL the plan gives the key records; ``observation`` is None when the
    authoritative servers were not asked (then no switch is made: signing stays on the
    key that is known to be published); ``state`` is what was recorded before (ignored
    when it belongs to another selector pair).
    """
    if dkim.previous is None:
        return Rotation(Phase.STEADY, dkim.selector, (dkim.selector,), None, f"no rotation: signing with {dkim.selector}")
    both = (dkim.previous, dkim.selector)
    if state is None or (state.selector, state.previous) != (dkim.selector, dkim.previous):
        state = RotationState(dkim.selector, dkim.previous)
    if state.switched_at is None:
        if observation is None or not observation.new_everywhere:
            lacking = ", ".join(observation.lacking) if observation and observation.servers else "the authoritative servers were not asked"
            return Rotation(Phase.PUBLISH, dkim.previous, both, state, (
                f"publishing {dkim.selector}; signing stays on {dkim.previous} until every authoritative server serves "
                f"{dkim.selector}'s record (not yet: {lacking})"
            ))
        old_ttl = max(ttl, observation.old_ttl)
        state = RotationState(dkim.selector, dkim.previous, now, now + old_ttl + dkim.retire_margin)
        switching = True
    else:
        switching = False
    retire_at = state.retire_at if state.retire_at is not None else (state.switched_at or now) + ttl + dkim.retire_margin
    signing = (f"every authoritative server serves {dkim.selector}'s record: this apply switches signing from {dkim.previous} "
               f"to {dkim.selector}" if switching else f"signing with {dkim.selector} since {when(state.switched_at or now)}")
    if now < retire_at:
        return Rotation(Phase.SWITCH, dkim.selector, both, state, (
            f"{signing}; {dkim.previous}'s record stays until {when(retire_at)} (its TTL plus dkim.retireMargin), "
            "then remove dkim.previous to delete it"
        ), switching)
    return Rotation(Phase.RETIRE, dkim.selector, both, state, (
        f"{signing}; {dkim.previous}'s record may be deleted since {when(retire_at)}: remove dkim.previous from the stack"
    ), switching)


def retire_problem(dkim: Dkim, state: RotationState | None, now: float) -> str | None:
    """Why the stack may not drop ``dkim.previous`` yet (None: it may, or nothing was
    rotating). Dropping it deletes the old key record, which mail signed with it still
    needs until the recorded retire time."""
    if state is None or dkim.previous == state.previous:
        return None
    if dkim.previous is not None:
        # A new rotation replaces the recorded one: only safe once the recorded one was
        # switched (its new selector is now this rotation's previous one).
        if state.switched_at is not None and dkim.previous == state.selector:
            return None
        return (f"a rotation {state.previous} -> {state.selector} is still running: finish it "
                f"(dkim.previous: {state.previous}) before rotating again")
    if dkim.selector != state.selector:
        return (f"the recorded rotation is {state.previous} -> {state.selector}, the stack now declares only "
                f"{dkim.selector}: set dkim.selector: {state.selector}, dkim.previous: {state.previous}")
    if state.switched_at is None:
        return (f"removed before the gateway switched to {state.selector} (its record was not yet seen on every "
                f"authoritative server): deleting {state.previous}'s record now would leave mail unverifiable")
    if state.retire_at is not None and now < state.retire_at:
        return (f"{state.previous}'s record may be deleted only after {when(state.retire_at)} (switch at "
                f"{when(state.switched_at)} + its TTL + dkim.retireMargin): keep dkim.previous: {state.previous} until then")
    return None


def refuse_early_retire(stack: MailDomain, state: RotationState | None, now: float) -> None:
    """RotationError naming ``dkim.previous`` and why (``retire_problem``) when a stack
    that signs at its gateways drops or replaces ``dkim.previous`` too early: the one
    refusal of ``mailstack plan``/``diff``/``render`` and ``lab up``, made before
    anything is asked or changed (the Pulumi provider words the same problem for its
    engine)."""
    if not stack.sends_via(SenderKind.GATEWAY):
        return
    problem = retire_problem(stack.dkim, state, now)
    if problem:
        raise RotationError(f"dkim.previous: {problem}")
