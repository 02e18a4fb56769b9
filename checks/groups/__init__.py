"""The checks, one module per mail mechanism (``spf``, ``dkim``, ``dmarc``, ``mx``,
``mta_sts``, ``published``, ``odoo``, ``smtp``, ``e2e``); importing a module registers
its checks under their stable ids."""
