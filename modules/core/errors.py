"""The exceptions of mailstack: one root, so callers can catch everything we raise.

Configuration errors carry the path of the offending key so the message a user sees
names it (``mailstack:dmarc.policy: ...``); several are collected and raised once, so a
user fixes a stack file in one pass rather than one error per run.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Sequence

#: How much of a bad value a message quotes: enough to recognise it, never the whole
#: of a 500 KB string or a 20,000-element list (whose repr alone costs time and memory).
QUOTE_LIMIT = 80
_REPR = reprlib.Repr()
_REPR.maxstring = QUOTE_LIMIT - 10
_REPR.maxother = QUOTE_LIMIT - 10
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4
_REPR.maxlevel = 2
#: A key path part shown as is; anything else (a key a stack file made up, with control
#: characters or 10,000 characters long) is quoted.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,80}")


class MailstackError(Exception):
    """Something mailstack cannot do; the message says what and why."""


def quote(value: object) -> str:
    """A value as an error message shows it: its repr, at most ``QUOTE_LIMIT``
    characters (the middle elided), control characters escaped, never raising (a
    10,000-digit integer has no repr)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError, TypeError):
        text = f"<{type(value).__name__}>"
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 3] + "..."
    return text


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path as users write it: ``mailstack:gateways[1].ipv4``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        shown = part if _PLAIN_KEY.fullmatch(part) else f"[{quote(part)}]"
        if not text:
            text = f"mailstack:{shown}" if not shown.startswith("[") else f"mailstack{shown}"
        elif shown.startswith("["):
            text += shown
        else:
            text += f".{shown}"
    return text or "mailstack"


class ConfigError(MailstackError):
    """One invalid value in a stack declaration, located by its key path."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        self.path = tuple(path)
        self.message = message
        super().__init__(f"{format_path(self.path)}: {message}")


class ConfigErrors(MailstackError):
    """Every error found in one declaration, raised once after validation ends."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


class PlanError(ConfigErrors):
    """The declaration is valid key by key but its records break a mail rule together
    (two SPF records at one name, a CNAME beside another record, SPF over budget).
    Each error names the key a user changes; ``problems`` are the broken rules as data."""

    def __init__(self, errors: Iterable[ConfigError], problems: Sequence[object] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(errors)


class RuleError(MailstackError, ValueError):
    """A value that breaks a mail rule (an SPF term, a DKIM key, a DMARC tag, a name).

    A ValueError too, so the config reader reports it at the key being read."""


class ProviderError(MailstackError):
    """A DNS provider refused or failed a change (REFUSED, NOTAUTH, BADSIG, timeout)."""
