"""``--domains-file FILE``: the domains of a fleet run, one per line, read strictly.

The file may come from anywhere (a customer list, a CI artifact), so it is read as
hostile input, wholly and before any query: blank lines and ``#`` comments (whole-line
or after the name) are ignored, a name is normalised (case, trailing dot) and a
duplicate is checked once; every invalid line is reported with its line number, and
one bad line fails the whole file (exit 2, nothing asked). Bounded: a line longer
than ``MAX_LINE`` or a file with more than ``MAX_DOMAINS`` names is refused rather
than read on. ``-`` reads standard input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from mailstack.core import names
from mailstack.core.errors import MailstackError

#: A domain name is at most 253 characters; a comment after it may add some.
MAX_LINE = 1024
MAX_DOMAINS = 1_000_000
#: Problems listed before the rest are counted only.
MAX_REPORTED = 20


class DomainsFileError(MailstackError):
    """The file's problems, each ``FILE:LINE: what``."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_REPORTED]
        more = [f"{path}: {len(problems) - len(shown)} more invalid lines"] if len(problems) > len(shown) else []
        super().__init__("\n".join([*shown, *more]))


def parse(lines: Iterable[str], path: str = "-") -> tuple[str, ...]:
    """The distinct, normalised domains of ``lines``, in first-seen order."""
    found: dict[str, None] = {}
    problems: list[str] = []
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE:
            problems.append(f"{path}:{number}: line longer than {MAX_LINE} characters")
            break
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            found.setdefault(names.domain(text), None)
        except names.InvalidName as err:
            problems.append(f"{path}:{number}: {text!r} is not a domain name: {err}")
        if len(found) > MAX_DOMAINS:
            problems.append(f"{path}:{number}: more than {MAX_DOMAINS} domains")
            break
    if problems:
        raise DomainsFileError(path, problems)
    if not found:
        raise DomainsFileError(path, [f"{path}: no domain in the file (blank lines and # comments only)"])
    return tuple(found)


def read(path: str) -> tuple[str, ...]:
    """The domains of the file at ``path`` (``-``: standard input)."""
    if path == "-":
        return parse(_bounded(sys.stdin), "-")
    try:
        with Path(path).open(encoding="utf-8", newline=None) as handle:
            return parse(_bounded(handle), path)
    except UnicodeDecodeError as err:
        raise DomainsFileError(path, [f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})"]) from err
    except OSError as err:
        raise DomainsFileError(path, [f"{path}: {err.strerror or err}"]) from err


def _bounded(handle: TextIO) -> Iterator[str]:
    """Lines of a text stream, each cut one character past ``MAX_LINE`` (so a file
    without newlines is never read whole into one string)."""
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith("\n"):
            yield line
            return
        yield line.rstrip("\n")
