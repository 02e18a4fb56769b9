"""The DKIM rotation in a Pulumi run: one private key per declared selector, what every
authoritative server serves (asked while the program runs), and the ``DkimRotation``
resource that keeps the switch time in Pulumi's state and refuses to let the old key
record go before its retire time.

The phase is decided by the one rule (``mailstack.rules.dkim_rotation.decide``). While
the program runs it decides the signing selector from the servers' answers alone: sign
with the new key only when every authoritative server serves it, else keep the old one
(which stays published as long as ``dkim.previous`` is declared, so either choice
verifies). The provider decides again at apply time with the recorded state: it
records the switch time once, exports the retire time, and — when the stack drops
``dkim.previous`` — fails before anything is deleted while that time has not passed.
The DNS components depend on the resource, so its failure stops the deployment before
their update (RFC 2136) and before Pulumi's deletes (Cloudflare: removed resources are
deleted only after the program's steps all succeeded).
"""

from __future__ import annotations

import time
from typing import Any

import pulumi
import pulumi.dynamic as dynamic
import pulumi_tls as tls

from mailstack.core.errors import MailstackError
from mailstack.core.model import Dkim, MailDomain
from mailstack.plan import Plan
from mailstack.rfc2136 import authoritative
from mailstack.rules import dkim_rotation
from mailstack.rules.dkim_rotation import Observation, RotationState, ServerView

#: The name the gateway key had before keys were named by selector (kept as an alias, so
#: an existing stack's key is the same resource, not a new key).
LEGACY_KEY_NAME = "dkim"
SECRET_OUTPUTS = ["private_key_pem", "private_key_openssh", "private_key_pem_pkcs8"]


def keys(stack: MailDomain) -> dict[str, tls.PrivateKey]:
    """One RSA key per selector in use: ``dkim.selector``'s, and ``dkim.previous``'s
    while a rotation runs. The key that existed before the rotation (the previous one,
    or the only one) carries the legacy name as an alias."""
    found: dict[str, tls.PrivateKey] = {}
    oldest = stack.dkim.previous or stack.dkim.selector
    for selector in dict.fromkeys(filter(None, (stack.dkim.previous, stack.dkim.selector))):
        aliases = [pulumi.Alias(name=LEGACY_KEY_NAME)] if selector == oldest else []
        found[selector] = tls.PrivateKey(
            f"dkim-{selector}", algorithm="RSA", rsa_bits=stack.dkim.bits,
            opts=pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS, aliases=aliases),
        )
    return found


def observe(planned: Plan) -> Observation | None:
    """What every authoritative server serves for the rotation's key records, asked now
    (None without a rotation). A server that cannot be asked counts as lacking the new
    key, so the gateway keeps signing with the old one."""
    try:
        return authoritative.observe_plan(planned)
    except MailstackError as err:  # no server known: not verified, the old key keeps signing
        return Observation((ServerView("the zone's authoritative servers", error=str(err)),))


def observation_json(observed: Observation | None) -> list[dict[str, Any]]:
    return [
        {"server": s.server, "missingNew": list(s.missing_new), "oldPublished": list(s.old_published), "oldTtl": s.old_ttl, "error": s.error}
        for s in (observed.servers if observed else ())
    ]


def observation_from_json(value: Any) -> Observation | None:
    if not value:
        return None
    return Observation(tuple(
        ServerView(str(v.get("server", "")), tuple(v.get("missingNew") or ()), tuple(v.get("oldPublished") or ()),
                   int(v.get("oldTtl") or 0), v.get("error"))
        for v in value
    ))


#: What a change of the rotation is: the declaration and the decision, not the answers.
DECIDED = ("selector", "previous", "retireMargin", "ttl", "phase", "signing", "state", "retireAt")


def _normal(value: Any) -> Any:
    """A value as the engine hands it back (numbers as floats, None dropped from maps)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


def _dkim(props: dict[str, Any]) -> Dkim:
    return Dkim(str(props["selector"]), previous=props.get("previous") or None, retire_margin=int(props.get("retireMargin", dkim_rotation.DEFAULT_MARGIN)))


def _state(props: dict[str, Any] | None) -> RotationState | None:
    return RotationState.from_json((props or {}).get("state") or None)


class DkimRotationProvider(dynamic.ResourceProvider):
    """Keeps the rotation's state (``state``: selector pair, switch and retire time)."""

    def _outputs(self, news: dict[str, Any], olds: dict[str, Any] | None) -> dict[str, Any]:
        declared, state, now = _dkim(news), _state(olds), time.time()
        problem = dkim_rotation.retire_problem(declared, state, now)
        if problem:
            raise ValueError(f"mailstack:dkim.previous: {problem}")
        if declared.previous is None:
            # Nothing rotates; a finished rotation's state is kept only until now.
            return {**news, "phase": "steady", "signing": declared.selector, "state": {}, "retireAt": None,
                    "next": f"no rotation: signing with {declared.selector}"}
        decided = dkim_rotation.decide(declared, int(news.get("ttl", 3600)), observation_from_json(news.get("observed")), state, now)
        return {**news, "phase": decided.phase.value, "signing": decided.signing, "next": decided.next,
                "state": decided.state.as_json() if decided.state else {}, "retireAt": decided.retire_at}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Fails (before any DNS step that depends on it) when ``dkim.previous`` was
        dropped too early; otherwise an update exactly when the decision changes (the
        servers' answers alone are no change: ``pulumi preview --expect-no-changes``
        stays quiet on a steady stack)."""
        decided = self._outputs(news, olds)
        changed = [key for key in DECIDED if _normal(decided.get(key)) != _normal(olds.get(key))]
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult("dkim-rotation", self._outputs(props, None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(self._outputs(news, olds))


class DkimRotation(dynamic.Resource, module="mailstack", name="DkimRotation"):
    """The rotation's phase and recorded switch time (exported as ``dkimRotation``)."""

    phase: pulumi.Output[str]
    signing: pulumi.Output[str]
    state: pulumi.Output[dict[str, Any]]
    retireAt: pulumi.Output[float | None]  # noqa: N815 - the output's name in Pulumi's state

    def __init__(self, resource_name: str, stack: MailDomain, observed: Observation | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "selector": stack.dkim.selector,
            "previous": stack.dkim.previous or "",
            "retireMargin": stack.dkim.retire_margin,
            "ttl": stack.dns.ttl,
            "observed": observation_json(observed),
            "phase": None, "signing": None, "state": None, "retireAt": None, "next": None,
        }
        super().__init__(DkimRotationProvider(), resource_name, props, opts)
