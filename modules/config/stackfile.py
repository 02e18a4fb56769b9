"""Read a Pulumi stack file (``stacks/Pulumi.<stack>.yaml``) without the Pulumi CLI.

The CLI, the checks and the lab read the same declaration the Pulumi program gets.
Values Pulumi encrypted (``{secure: ...}``) cannot be decrypted here: they become a
``Secret`` marker, and the tool that needs one reads it from the environment instead
(see ``secret_from_env``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailstack.core.errors import ConfigError, ConfigErrors, MailstackError
from mailstack.core.model import MailDomain

NAMESPACE = "mailstack"


@dataclass(frozen=True, slots=True)
class Secret:
    """An encrypted stack value; only the Pulumi engine can read it."""

    key: str


def read_namespace(path: Path) -> dict[str, Any]:
    """The ``mailstack:`` keys of a stack file, prefix stripped, secure values marked."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise MailstackError(f"{path}: no such stack file") from err
    except OSError as err:
        raise MailstackError(f"{path}: cannot read the stack file: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise MailstackError(f"{path}: not a UTF-8 text file") from err
    except yaml.YAMLError as err:
        raise MailstackError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(document, dict):
        raise MailstackError(f"{path}: a stack file is a mapping with a 'config:' key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigErrors([ConfigError((), "the stack file's 'config:' must be a mapping")])
    raw: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE or not name:
            continue
        raw[name] = Secret(name) if isinstance(value, dict) and set(value) == {"secure"} else value
    return raw


def load(path: Path) -> MailDomain:
    """Read and validate a stack file into a MailDomain."""
    from mailstack.config.stack import from_config

    return from_config(read_namespace(path))


def secret_from_env(key: str, raw: dict[str, Any]) -> str | None:
    """A secret for CLI use: ``MAILSTACK_<KEY>`` (e.g. MAILSTACK_TSIG_SECRET), or
    ``MAILSTACK_<KEY>_FILE`` naming a file, or a plain (unencrypted) stack value."""
    env = "MAILSTACK_" + "".join("_" + c if c.isupper() else c.upper() for c in key)
    if env in os.environ:
        return os.environ[env]
    if env + "_FILE" in os.environ:
        return Path(os.environ[env + "_FILE"]).read_text(encoding="utf-8").strip()
    value = raw.get(key)
    if isinstance(value, str):
        return value
    return None
