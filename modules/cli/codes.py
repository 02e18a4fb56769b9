"""The ``mailstack`` command's exit codes, the same for every subcommand."""

EXIT_OK = 0
#: A check failed or could not be decided, or drift was found.
EXIT_FAILED = 1
#: Bad arguments or configuration (the message names the key or option).
EXIT_USAGE = 2
