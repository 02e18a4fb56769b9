"""The system users the lab's roles run as, made once (``useradd --system``).

The mailgate runs as a user of its own, never ``nobody`` (a uid every unrelated
service shares would own Odoo's password file); the receiver's mailboxes belong to
another. Both are plain system users without a home or a login shell, the way the
gateway component creates ``mailgate`` on a real host.
"""

from __future__ import annotations

import pwd
import subprocess

from mailstack.core.errors import MailstackError
from mailstack.lab.binaries import binary

#: Runs the gateways' mailgate (Postfix's pipe ``user=``) and owns its password file.
MAILGATE_USER = "mslab-mailgate"
#: Owns the independent receiver's Maildirs (Postfix ``virtual`` delivers as it).
MAILBOX_USER = "mslab-mail"
USERS = (MAILGATE_USER, MAILBOX_USER)
#: useradd's exit code for "the user exists" (another lab made it meanwhile).
_EXISTS = 9


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure(names: tuple[str, ...] = USERS) -> list[str]:
    """Create the users that are missing; returns the ones created."""
    created = []
    for name in names:
        if exists(name):
            continue
        result = subprocess.run(
            [binary("useradd"), "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True,
        )
        if result.returncode not in (0, _EXISTS):
            raise MailstackError(f"useradd {name}: {result.stderr.strip()}")
        created.append(name)
    return created


def ids(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid
