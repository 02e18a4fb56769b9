"""The ``mailstack`` command: ``main`` parses and dispatches, each subcommand is a module
(``records``, ``render``, ``check``, ``diff``, ``lab``) and the options several of them
share live in ``options``. Errors become messages and exit codes, never tracebacks."""
