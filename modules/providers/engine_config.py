"""Read the ``mailstack:`` namespace from the Pulumi engine (``pulumi up``, or mocks).

Pulumi hands config to the program as strings (structured values as JSON); we list
every key of the namespace so unknown keys are reported like in the CLI, and decode
JSON where a value is structured. Secrets stay Pulumi secrets: they are read with
``Config.require_secret`` by whoever needs them, never put into the model.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi.runtime.config as runtime_config

from mailstack.config.stackfile import NAMESPACE, Secret, namespace_typos
from mailstack.core.errors import ConfigErrors


def read_namespace() -> dict[str, Any]:
    """The namespace's keys, prefix stripped, JSON values decoded, secrets marked.
    ConfigErrors for a key whose namespace is a near-miss of ``mailstack``."""
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    typos = namespace_typos(dict.fromkeys(sorted(keys)), "Pulumi config")
    if typos:
        raise ConfigErrors(typos)
    raw: dict[str, Any] = {}
    for full_key in sorted(keys):
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE or not name:
            continue
        if runtime_config.is_config_secret(full_key) or full_key in runtime_config.get_config_secret_keys_env():
            raw[name] = Secret(name)
            continue
        value = runtime_config.get_config(full_key)
        raw[name] = _decode(value)
    return raw


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError, ValueError):
            return value  # reported by the reader as the wrong type at its key
    return value


def secret(key: str) -> pulumi.Output[str] | None:
    """A secret config value as a Pulumi secret Output, None when unset."""
    return pulumi.Config(NAMESPACE).get_secret(key)
