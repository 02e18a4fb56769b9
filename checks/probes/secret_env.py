"""Secrets the checks read from their environment: the variable itself, or the file that
``<VARIABLE>_FILE`` names (a file keeps the secret out of the environment every child
inherits, and out of argv). One reader for every check group (Odoo's password, the IMAP
mailbox's), so all of them treat a missing or unreadable file alike.
"""

from __future__ import annotations

import os
from pathlib import Path


def secret_from_env(name: str) -> str | None:
    """``$name``, else the stripped content of the file ``$name_FILE``; None when neither
    is set. ValueError naming the variable and the path when the file cannot be read."""
    value = os.environ.get(name)
    if value is not None:
        return value
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ValueError(f"{name}_FILE {path}: cannot be read ({reason})") from None
