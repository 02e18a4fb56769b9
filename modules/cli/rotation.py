"""The DKIM rotation as ``mailstack plan`` and ``mailstack diff`` show it: the options
that give the previous key and the recorded state, and the decided phase in words.

The phase comes from the one rule (``mailstack.rules.dkim_rotation.decide``) with what
every authoritative server serves now (``mailstack.rfc2136.authoritative.decide``, the
observation ``mailstack lab up`` makes too). ``plan``, ``diff`` and ``check`` record
nothing: the switch time they read is the one ``pulumi up`` exported (``pulumi stack
output dkimRotation --json``), ``render --dkim-rotation FILE`` recorded, or the lab keeps
in its state directory (``<state>/stacks/<id>/dkim-rotation.json``, written by each
``lab up``: ``mailstack.lab.rotation``), given with ``--dkim-rotation FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mailstack import plan
from mailstack.cli import options
from mailstack.core.errors import MailstackError, RuleError
from mailstack.core.model import MailDomain, SenderKind
from mailstack.rules import dkim, dkim_rotation
from mailstack.rules.dkim_rotation import Rotation, RotationState


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dkim-previous-public-key", metavar="PEM", type=Path,
                        help="during a DKIM rotation: the previous selector's public key (PEM file)")
    parser.add_argument("--dkim-rotation", metavar="FILE", type=Path,
                        help="the recorded DKIM rotation state (JSON: `pulumi stack output dkimRotation --json`, or the lab's)")


def previous_key(args: argparse.Namespace) -> str | None:
    path = args.dkim_previous_public_key
    key = options.read_text(path, "--dkim-previous-public-key")
    if key is not None:
        try:
            dkim.public_key_base64(key)
        except dkim.DkimKeyError as err:
            raise MailstackError(f"--dkim-previous-public-key {path}: {err}") from err
    return key


def read_state(path: Path | None, missing_ok: bool = False) -> RotationState | None:
    """``--dkim-rotation FILE``; a missing FILE is no state yet where ``missing_ok``
    (``render`` starts the record there)."""
    if path is not None and missing_ok and not path.exists():
        return None
    text = options.read_text(path, "--dkim-rotation")
    if text is None:
        return None
    try:
        return RotationState.loads(text)
    except RuleError as err:
        raise MailstackError(f"--dkim-rotation {path}: {err}") from err


def with_rotation(planned: plan.Plan, state: RotationState | None, nameservers: list[tuple[str, int]], timeout: float) -> plan.Plan:
    """The plan with the rotation decided from the authoritative servers' answers and
    the recorded ``state`` (``read_state``, read before anything is asked), or unchanged
    when the stack declares no rotation; MailstackError when ``dkim.previous`` was
    dropped before the recorded retire time."""
    stack = planned.stack
    dkim_rotation.refuse_early_retire(stack, state, time.time())
    if not stack.sends_via(SenderKind.GATEWAY) or stack.dkim.previous is None:
        return planned
    from mailstack.rfc2136 import authoritative  # dnspython's query modules: only when servers are asked (start-up)

    return authoritative.decide(planned, state, nameservers, timeout)


def record(args: argparse.Namespace, planned: plan.Plan) -> plan.Plan:
    """``mailstack render --dkim-rotation FILE``: decide the phase with the servers'
    answers and the state in FILE, write the state back (the switch time, once), and
    say the phase on stderr (stdout lists the files written)."""
    try:
        from mailstack.checks.dns.resolver import Resolver  # only when the servers are asked (start-up)

        servers = [(s.address, s.port) for s in Resolver.from_strings(args.nameserver, args.timeout).servers]
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err
    decided = with_rotation(planned, read_state(args.dkim_rotation, missing_ok=True), servers, args.timeout)
    if decided.rotation is not None and decided.rotation.state is not None:
        try:
            args.dkim_rotation.write_text(json.dumps(decided.rotation.state.as_json()) + "\n", encoding="utf-8")
        except OSError as err:
            raise MailstackError(f"--dkim-rotation {args.dkim_rotation}: cannot write there: {err.strerror or err}") from err
    print("\n".join(lines(decided.stack, decided.rotation)), file=sys.stderr)
    return decided


def lines(stack: MailDomain, rotation: Rotation | None) -> list[str]:
    """The rotation in words, for the text output (nothing without a rotation)."""
    if rotation is None or stack.dkim.previous is None:
        return []
    text = [f"DKIM rotation {stack.dkim.previous} -> {stack.dkim.selector}: phase {rotation.phase.value}, signing with {rotation.signing}",
            f"  next: {rotation.next}"]
    if rotation.retire_at is not None:
        text.append(f"  {stack.dkim.previous}'s record may be deleted from {dkim_rotation.when(rotation.retire_at)}")
    return text


def as_json(rotation: Rotation | None) -> dict[str, Any] | None:
    return rotation.as_json() if rotation else None
