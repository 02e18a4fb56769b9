"""The exceptions of mailstack: one root, so callers can catch everything we raise.

Configuration errors carry the path of the offending key so the message a user sees
names it (``mailstack:dmarc.policy: ...``); several are collected and raised once, so a
user fixes a stack file in one pass rather than one error per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class MailstackError(Exception):
    """Something mailstack cannot do; the message says what and why."""


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path as users write it: ``mailstack:gateways[1].ipv4``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not text:
            text = f"mailstack:{part}"
        else:
            text += f".{part}"
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
