"""``python -m mailstack.lab.odoo``: run the Odoo stand-in (see ``process.main``)."""

import sys

from mailstack.lab.odoo.process import main

sys.exit(main())
