"""The ``mailstack:checks`` key: what ``mailstack check`` skips for this stack.

``{disable: [<check id>, ...]}``. The ids are checked here for their form (the same
error collector as every other key); whether each names a registered check is the
check suite's question, asked when it runs (``mailstack.checks.run``), which reads the
validated ``MailDomain.checks``.
"""

from __future__ import annotations

from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.model import Checks


def read_checks(reader: ConfigReader, value: Any) -> Checks | None:
    path: Path = ("checks",)
    data = reader.mapping(value, path, ("disable",))
    if data is None:
        return None
    value = data.get("disable")
    if value is not None and not isinstance(value, list):
        reader.fail((*path, "disable"), "must be a list of check ids")
        return None
    items = reader.sequence(value, (*path, "disable"), what="check ids")
    if items is None:
        return None
    disabled: list[str] = []
    for index, item in enumerate(items):
        check_id = reader.convert(item, (*path, "disable", index), kinds.check_id)
        if check_id and check_id not in disabled:
            disabled.append(check_id)
    return Checks(tuple(disabled))
