"""Run the Pulumi program (``__main__.py``) for a stack file under Pulumi's mocks.

Only Cloudflare (and the other providers' engines) are stood in: the program, the
model, the plan and the components run for real. ``run_program(stack_file)`` reads the
stack file's ``config:`` the way the Pulumi CLI hands it to a program (strings, with
structured values as JSON, ``secure:`` values as secrets), runs ``__main__.py`` with
runpy inside ``@pulumi.runtime.test`` and returns every registered resource (type,
name, inputs as the engine sees them — camelCase names, floats for numbers — the
``protect`` flag and the parent URN), every provider function call, and the resolved
stack exports.

Later parts of mailstack add resources (gateway components, the RFC 2136 provider) to
``__main__.py``: tests should select the resources they assert on (``of_type``) and never
count the total. The mocks return a real RSA public key for ``tls.PrivateKey`` so that
records derived from it can be checked byte for byte; ``Mocks.keys`` holds the PEMs.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import pulumi.runtime.mocks as pulumi_mocks
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_ROOT / "__main__.py"
PROJECT = "mailstack"

ZONE_TOKEN = "cloudflare:index/getZone:getZone"
PRIVATE_KEY_TOKEN = "tls:index/privateKey:PrivateKey"

_KEY_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """A real RSA key of that size, generated once per size per test session."""
    if bits not in _KEY_CACHE:
        _KEY_CACHE[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _KEY_CACHE[bits]


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """The private key as pulumi-tls's ``private_key_pem`` output writes it (PKCS#1 PEM)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def zone_id_for(zone: str) -> str:
    """The zone id the mocks answer for a zone name (deterministic, so tests can expect it)."""
    return "zone-" + zone.replace(".", "-")


@dataclass
class Registered:
    """One resource the program registered, as the engine saw it."""

    type: str
    name: str
    inputs: dict[str, Any]
    urn: str = ""
    parent: str = ""
    protect: bool = False
    custom: bool = True
    #: The ``import`` resource option: the id of an existing resource to adopt.
    import_id: str | None = None
    #: URNs of the resources it depends on (``depends_on`` and inputs from their outputs).
    dependencies: list[str] = field(default_factory=list)
    delete_before_replace: bool = False


@dataclass
class Call:
    """One provider function call (invoke), e.g. Cloudflare's getZone."""

    token: str
    args: dict[str, Any]


@dataclass
class ProgramRun:
    """What one run of ``__main__.py`` under mocks produced."""

    resources: list[Registered]
    calls: list[Call]
    exports: dict[str, Any]
    #: PEM public keys returned for each tls.PrivateKey, by resource name.
    public_keys: dict[str, str] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, found {len(matches)}"
        return matches[0]


class Mocks(pulumi.runtime.Mocks):
    """Stand-ins for the providers: resources echo their inputs; getZone answers an id.

    A ``tls.PrivateKey`` answers a real public key; its private half is a placeholder
    unless ``real_private_keys`` (a deploy that runs for real needs the real key)."""

    def __init__(self, real_private_keys: bool = False) -> None:
        self.resources: list[Registered] = []
        self.calls: list[Call] = []
        self.public_keys: dict[str, str] = {}
        self.real_private_keys = real_private_keys

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), custom=bool(args.custom), import_id=args.resource_id or None))
        if args.typ == PRIVATE_KEY_TOKEN:
            key = rsa_key(int(args.inputs.get("rsaBits", 2048)))
            pem = public_pem(key)
            self.public_keys[args.name] = pem
            state.update(publicKeyPem=pem, privateKeyPem=private_pem(key) if self.real_private_keys else "(mock private key)")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(Call(args.token, dict(args.args)))
        if args.token == ZONE_TOKEN:
            name = args.args.get("filter", {}).get("name", "")
            return {"id": zone_id_for(name), "zoneId": zone_id_for(name), "name": name}, []
        return {}, []


class _Monitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also recording the options the mocks do not see (protect, parent)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.options: dict[str, tuple[str, bool]] = {}
        self._mocks = mocks

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        for resource in reversed(self._mocks.resources):
            if resource.name == request.name and resource.type == request.type and not resource.urn:
                resource.urn = response.urn
                resource.parent = request.parent
                resource.protect = bool(request.protect)
                resource.dependencies = list(request.dependencies)
                resource.delete_before_replace = bool(request.deleteBeforeReplace)
                break
        else:
            if request.type != "pulumi:pulumi:Stack":
                # Components are not passed to new_resource when remote=False; keep them too.
                self._mocks.resources.append(
                    Registered(request.type, request.name, {}, response.urn, request.parent, bool(request.protect), False,
                               dependencies=list(request.dependencies))
                )
        return response


def stack_config(stack_file: Path) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the Pulumi engine hands it to a program.

    Values become strings (structured values JSON, booleans ``true``/``false``);
    ``secure:`` values become a placeholder string marked secret.
    """
    document = yaml.safe_load(stack_file.read_text(encoding="utf-8")) or {}
    config: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in (document.get("config") or {}).items():
        key = str(key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = f"(secret {key})"
            secrets.append(key)
        else:
            config[key] = config_string(value)
    return config, secrets


def config_string(value: Any) -> str:
    """One config value in the engine's string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def stack_name(stack_file: Path) -> str:
    """``Pulumi.<name>.yaml`` → ``<name>``."""
    return stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")


def run_program(
    stack_file: Path | None = None,
    *,
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
    preview: bool = False,
    before_run: Callable[[], None] | None = None,
    mocks: Mocks | None = None,
) -> ProgramRun:
    """Run ``__main__.py`` under fresh mocks with a stack file's config (or ``config``).

    Pulumi runtime state is reset first (root stack, settings, config), so runs for
    different stacks never share resources; modules imported by the program stay cached
    in ``sys.modules``, which is harmless because they do no work at import.
    Exceptions raised by the program propagate (``pulumi.RunError`` for a bad stack);
    pass your own ``mocks`` to see what was registered before one.
    """
    if stack_file is not None:
        file_config, file_secrets = stack_config(stack_file)
        name = stack_name(stack_file)
    else:
        file_config, file_secrets, name = {}, [], "test"
    all_config = {**file_config, **(config or {})}
    secrets = [*file_secrets, *(secret_keys or [])]

    mocks = mocks if mocks is not None else Mocks()
    pulumi.runtime.reset_options(project=PROJECT, stack=name, preview=preview)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=name, preview=preview, monitor=_Monitor(mocks))
    pulumi.runtime.set_all_config(all_config, secret_keys=secrets)

    exports: dict[str, Any] = {}
    pending: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(key: str, value: Any) -> None:
        pending[key] = value
        original_export(key, value)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        if before_run is not None:
            before_run()
        pulumi.export = capture  # type: ignore[assignment]
        try:
            runpy.run_path(str(PROGRAM), run_name="__main__")
        finally:
            pulumi.export = original_export  # type: ignore[assignment]
        return pulumi.Output.from_input(pending).apply(exports.update)

    program()
    return ProgramRun(mocks.resources, mocks.calls, exports, mocks.public_keys)
