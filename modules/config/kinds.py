"""Typed values of the declaration that several sections share: e-mail local parts,
Odoo database names, SSH host keys. Each function takes a raw value and returns it normalised or
raises ValueError, so ``ConfigReader.convert`` reports it at the key being read."""

from __future__ import annotations

import re
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

#: Odoo's own rule for database names (odoo.service.db.DBNAME_PATTERN).
_DBNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def database_name(value: Any) -> str:
    if not isinstance(value, str) or not _DBNAME.match(value):
        raise ValueError(f"{value!r} is not an Odoo database name (letters, digits, '_', '.', '-')")
    return value


def local_part(value: Any) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "._+-" for c in value):
        raise ValueError(f"{value!r} is not an e-mail local part")
    return value.lower()


#: Host key types OpenSSH's sshd offers (``ssh -Q HostKeyAlgorithms``, without certificates).
SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def ssh_host_key(value: Any) -> str:
    """An SSH host public key as ``/etc/ssh/ssh_host_*_key.pub`` holds it (``TYPE BASE64
    [comment]``), returned as ``TYPE BASE64``: the key pulumi-command pins the host to."""
    if not isinstance(value, str) or not value.isprintable():
        raise ValueError(f"{value!r} is not an SSH public key line (TYPE BASE64, e.g. the host's ssh_host_ed25519_key.pub)")
    fields = value.split()
    if len(fields) < 2 or fields[0] not in SSH_KEY_TYPES:
        raise ValueError(f"{value[:40]!r} is not an SSH public key of type {', '.join(SSH_KEY_TYPES)}")
    key = f"{fields[0]} {fields[1]}"
    try:
        serialization.load_ssh_public_key(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
        raise ValueError(f"{key[:40]!r}...: not a valid {fields[0]} public key") from err
    return key
