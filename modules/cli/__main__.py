"""``python -m mailstack.cli``: the same as the ``mailstack`` command."""

import sys

from mailstack.cli.main import main

sys.exit(main())
