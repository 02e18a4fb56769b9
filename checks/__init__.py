"""The check suite: verify a live mail domain against its declaration.

Layers, each its own module so other commands (``mailstack diff``, the lab's ``e2e``
group) reuse them without the rest:

- ``finding``: the result value (``Finding``, ``Status``).
- ``registry``: ``@check("spf.lookups", group="spf")`` and selection by id or group.
- ``resolver``: dnspython queries to injectable servers, typed answers and ``DnsError``.
- ``published``: declared records (``modules.plan``) against what DNS serves.
- ``context``: what a check gets (domain, declaration, resolver, options, memo).
- ``runner``: bounded concurrency, per-check isolation, an overall deadline.
- ``report_*``: text, JSON, JUnit XML and SARIF renderings of findings.
- ``spf_tree``, ``spf_pyspf``, ``smtp_probe``, ``mta_sts_policy``: fetches into typed
  observations (and pyspf bound to our resolver) that the checks judge without I/O.
- ``*_checks``: the checks themselves, grouped by mail mechanism; ``cli`` is
  ``mailstack check``.

Nothing here does I/O at import time.
"""
