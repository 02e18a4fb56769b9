"""What a change means on Cloudflare: a twin is refused, an import id adopts.

The change calculator (``mailstack.plan.changes``) is provider-neutral: a live record
exactly as planned is ``adopt`` — taken over without a write, which is what RFC 2136
does. Cloudflare cannot: it refuses to create a record identical to an existing one, and
Pulumi only manages an existing record when the program registers it with the
``import`` option and the record's id (``mailstack:dns.adopt``: record key →
``<zone_id>/<record_id>``). So on Cloudflare

- ``adopt`` without an id is a conflict (``pulumi up`` would fail): run ``mailstack adopt``;
- ``adopt`` with an id is an import;
- a conflict with a record of the same role (an old SPF) whose key has an id is an
  update: Pulumi imports that record, then updates it to the planned value — one SPF
  throughout, never two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from mailstack.plan.changes import Action, Change, ChangeSet


def refine(decided: ChangeSet, adopt: Mapping[str, str]) -> ChangeSet:
    """``decided`` as Cloudflare will carry it out, given the ``dns.adopt`` import ids."""
    result: list[Change] = []
    for change in decided.changes:
        key = change.planned.key if change.planned is not None else None
        if change.action is Action.ADOPT and key not in adopt:
            assert change.planned is not None
            result.append(replace(change, action=Action.CONFLICT, note=(
                f"{change.name} {change.type} {change.planned.value!r} already exists on Cloudflare, which refuses to "
                "create its twin, so `pulumi up` would fail. Ways out: declare it — `mailstack adopt` writes its "
                f"import id into mailstack:dns.adopt ({key}: <zone_id>/<record_id>) —, or remove it from the zone")))
        elif change.action is Action.ADOPT and key is not None:
            result.append(replace(change, note=f"imported by id {adopt[key]}"))
        elif change.action is Action.CONFLICT and key is not None and key in adopt and change.live is not None and change.planned is not None and change.live.type == change.planned.type:
            result.append(replace(change, action=Action.UPDATE, note=f"imported by id {adopt[key]}, then updated to the planned value"))
        else:
            result.append(change)
    return ChangeSet(tuple(result))
