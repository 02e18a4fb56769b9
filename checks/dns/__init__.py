"""DNS for the checks: the resolver (injectable servers, typed answers, ``DnsError`` for
undecidable questions), the plan compared with what DNS serves (``published``), and
``diff``, the drift detector per authoritative server."""
