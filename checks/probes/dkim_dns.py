"""dkimpy's DNS through the check run's resolver (``dnsfunc``): the DKIM checks and the
second opinion on what the e2e probes' receiver concluded both verify that way."""

from __future__ import annotations

from collections.abc import Callable

import dkim as dkimpy

from mailstack.checks.dns.resolver import DnsError, Resolver


def dnsfunc(resolver: Resolver, errors: list[DnsError] | None = None) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` answering from our resolver (TXT, CNAMEs followed).

    dkimpy turns a DNS failure into "does not verify"; the DnsError is kept in
    ``errors`` so the caller can report the check as undecided instead."""
    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.txt(text)
        except DnsError as err:
            if errors is not None:
                errors.append(err)
            raise dkimpy.DnsTimeoutError(str(err)) from err
        return answer.texts()[0].encode() if answer.records else None
    return lookup
