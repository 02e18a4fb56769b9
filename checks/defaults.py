"""The check run's defaults, in a module that imports nothing: the command line shows
them in ``--help`` without loading the engine, dnspython or the checks."""

#: Seconds per DNS query (one attempt per server).
DEFAULT_TIMEOUT = 3.0
#: DNS queries in flight per name server.
DEFAULT_CONCURRENCY = 64
#: Threads for blocking checks, and as many for blocking probes (pyspf, dkimpy, SMTP, HTTPS).
DEFAULT_WORKERS = 16
#: Seconds a target's checks may take, at least; a target with many mail domains gets
#: ``DEFAULT_DEADLINE_PER_DOMAIN`` per domain when that is more.
DEFAULT_DEADLINE = 120.0
DEFAULT_DEADLINE_PER_DOMAIN = 1.0
#: Mail domains whose checks are in flight at once in a fleet run.
DEFAULT_WINDOW = 256
#: Report formats.
FORMATS = ("text", "json", "junit", "sarif")
