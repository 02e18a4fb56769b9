"""The Pulumi side: the ``mailstack:`` namespace read from the engine
(``engine_config``), Cloudflare records (``cloudflare``), the RFC 2136 dynamic provider
and its component (``rfc2136``, ``rfc2136_records``) and the gateway deployment over
SSH (``gateway``). The only layer besides ``policy`` that imports Pulumi."""
