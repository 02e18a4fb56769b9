"""Typed values of the declaration that several sections share: e-mail local parts and
Odoo database names. Each function takes a raw value and returns it normalised or
raises ValueError, so ``ConfigReader.convert`` reports it at the key being read."""

from __future__ import annotations

import re
from typing import Any

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
