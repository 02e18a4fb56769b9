"""The check suite: verify a live mail domain against its declaration.

- ``engine``: the result value (``finding``), the registry by stable id, what a check
  receives (``context``) and the concurrent runner with its deadline;
- ``dns``: the resolver (typed answers, typed errors), declared-vs-published records
  (``published``) and the drift detector behind ``mailstack diff`` (``diff``);
- ``probes``: fetches that talk to the network (SPF tree, pyspf, SMTP, the MTA-STS
  policy, the end-to-end probes) and return observations the checks judge;
- ``groups``: the checks themselves, one module per mail mechanism;
- ``report``: text, JSON, JUnit XML and SARIF renderings of findings;
- ``run``: one run for a target, as the CLI and the lab start it.

Nothing here does I/O at import time.
"""
