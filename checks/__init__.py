"""The check suite: verify a live mail domain against its declaration.

- ``engine``: the result value (``finding``), the registry by stable id, what a check
  receives (``context``) and the runner (every target's checks at once on the DNS
  event loop, deadlines per target);
- ``dns``: the asynchronous resolver every check shares (``aresolver``, over
  ``transport``, on the one event loop of ``loop``), its blocking face (``resolver``),
  the typed answers and errors (``answer``), declared-vs-published records
  (``published``) and the drift detector behind ``mailstack diff`` (``diff``);
- ``probes``: fetches that talk to the network (SPF tree, pyspf, SMTP, the MTA-STS
  policy, the end-to-end probes) and return observations the checks judge;
- ``groups``: the checks themselves, one module per mail mechanism;
- ``report``: text, JSON, JUnit XML and SARIF renderings of findings;
- ``run``: a run for one target or a fleet, as the CLI and the lab start it;
  ``domains_file`` reads ``--domains-file``; ``defaults`` the options' defaults.

Nothing here does I/O at import time.
"""
