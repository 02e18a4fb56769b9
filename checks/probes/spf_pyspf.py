"""pyspf (``spf.query``) evaluating through our resolver, without monkeypatching.

pyspf resolves through a module-global ``DNSLookup`` function. Replacing that global
would redirect every concurrent pyspf user in the process; instead ``_query_class``
builds a ``spf.query`` subclass whose ``dns`` method is pyspf's own code bound to a
copy of pyspf's globals in which ``DNSLookup`` is ours. Each resolver gets its own
class (built per evaluation: cheap, and nothing to invalidate), so concurrent checks against different servers never mix.
"""

from __future__ import annotations

import types
from typing import Any

import spf as pyspf

from mailstack.checks.dns.resolver import DnsError, Resolver

_SUPPORTED = ("A", "AAAA", "MX", "PTR", "TXT", "CNAME")


def _lookup_function(resolver: Resolver) -> Any:
    def lookup(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:
        if qtype not in _SUPPORTED:
            return []  # type SPF (99) is obsolete (RFC 7208 §3.1); we never publish it
        try:
            answer = resolver.query(name, qtype)
        except DnsError as err:
            raise pyspf.TempError(f"DNS {err}") from err
        key = (name, qtype)
        if qtype in ("A", "AAAA"):
            return [(key, a) for a in answer.addresses()]
        if qtype == "MX":
            return [(key, (pref, host)) for pref, host in answer.mx()]
        if qtype in ("PTR", "CNAME"):
            return [(key, t) for t in answer.targets()]
        return [(key, list(r.strings)) for r in answer.records]  # type: ignore[attr-defined]

    return lookup


def _query_class(resolver: Resolver) -> type[pyspf.query]:
    original = pyspf.query.dns
    namespace = dict(original.__globals__)
    namespace["DNSLookup"] = _lookup_function(resolver)
    rebound = types.FunctionType(original.__code__, namespace, original.__name__, original.__defaults__, original.__closure__)
    return type("ResolverQuery", (pyspf.query,), {"dns": rebound})


def check_host(resolver: Resolver, ip: str, domain: str, sender: str | None = None) -> tuple[str, str]:
    """RFC 7208 check_host(ip, domain, sender) as pyspf computes it: (result, explanation).

    Results are pyspf's: pass, fail, softfail, neutral, none, permerror, temperror.
    """
    query_class = _query_class(resolver)
    query = query_class(i=ip, s=sender or f"postmaster@{domain}", h=domain, querytime=0, timeout=resolver.timeout * 4)
    result, _code, explanation = query.check()
    return str(result), str(explanation)
