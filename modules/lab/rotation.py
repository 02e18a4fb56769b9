"""The lab's DKIM rotation (``dkim.previous``), run the way ``pulumi up`` runs it.

Each ``lab up`` is one apply: before it publishes, it asks the lab's authoritative
server what it serves (``mailstack.rfc2136.authoritative.decide``, the observation
``mailstack plan``/``diff``/``render`` make) and decides the phase with the one rule
(``mailstack.rules.dkim_rotation``; an early drop of ``dkim.previous`` is refused there,
``refuse_early_retire``) and the state recorded in the stack's state
directory, ``<state>/stacks/<id>/dkim-rotation.json`` (0600, ``RotationState.as_json``:
what Pulumi keeps in its ``dkim-rotation`` resource). The records of the plan are then
published (both keys while a rotation runs), the running gateways' OpenDKIM is put on
the phase's signing tables (``mailstack.lab.gateway.resign``: Postfix and its queue are
kept) and, after all that succeeded, the state is written — the switch time once.

``lab check`` and ``lab status`` read the recorded state (``recorded_plan``), without
asking anything: the gateway signs with what the last ``lab up`` decided.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mailstack.core.errors import MailstackError, RuleError
from mailstack.core.model import SenderKind
from mailstack.lab import files
from mailstack.lab.state import LabState, stack_dir
from mailstack.plan import Plan
from mailstack.rfc2136 import authoritative
from mailstack.rules import dkim_rotation
from mailstack.rules.dkim_rotation import RotationState

STATE_FILE = "dkim-rotation.json"
#: Seconds per query to the lab's BIND (on loopback: an answer is immediate).
TIMEOUT = 5.0


def state_path(root: Path, stack_file: Path) -> Path:
    """Where the stack's rotation state is kept in the state directory ``root``."""
    return stack_dir(root, stack_file) / STATE_FILE


def path_of(state: LabState) -> Path:
    """The rotation state of the lab's current stack."""
    return state.stack_root / STATE_FILE


def read(path: Path) -> RotationState | None:
    """The recorded state (None: none yet); MailstackError names the file when it
    cannot be read (a hand-edited file is refused, not half-read)."""
    if not path.exists():
        return None
    try:
        return RotationState.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise MailstackError(f"{path}: cannot read the DKIM rotation state: {err}") from err
    except RuleError as err:
        raise MailstackError(f"{path}: {err}") from err


def recorded_plan(planned: Plan, state: RotationState | None) -> Plan:
    """The plan with the phase the recorded state gives (nothing asked): what the last
    ``lab up`` made the gateway sign with, for ``lab check`` (``dkim.rotation`` reads
    the switch and retire time from it) and a restarted gateway."""
    stack = planned.stack
    if state is None or stack.dkim.previous is None or not stack.sends_via(SenderKind.GATEWAY):
        return planned
    return planned.with_rotation(dkim_rotation.decide(stack.dkim, stack.dns.ttl, None, state, time.time()))


def decide(planned: Plan, state: RotationState | None) -> Plan:
    """The phase of this ``lab up``: what the lab's authoritative server serves now
    (before this run publishes) and the recorded state."""
    return authoritative.decide(planned, state, (), TIMEOUT)


def record(path: Path, planned: Plan) -> None:
    """After a successful ``lab up``: keep the decided state (the switch time, once);
    without a rotation the finished one's state is dropped, as the Pulumi resource
    drops it."""
    if planned.stack.dkim.previous is None:
        path.unlink(missing_ok=True)
    elif planned.rotation is not None and planned.rotation.state is not None:
        files.write(path, json.dumps(planned.rotation.state.as_json()) + "\n", 0o600)
