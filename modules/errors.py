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


class PlanError(MailstackError):
    """The declaration is valid key by key but its records break a mail rule together
    (two SPF records at one name, a CNAME beside another record, SPF over budget)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        #: Each broken rule on its own, so config errors can name a key per problem.
        self.problems = tuple(problems) or (message,)
        super().__init__(message)


class ProviderError(MailstackError):
    """A DNS provider refused or failed a change (REFUSED, NOTAUTH, BADSIG, timeout)."""


class UnsafePlanError(MailstackError):
    """A change would delete mail-critical records without an explicit allowance."""
