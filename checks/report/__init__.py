"""Renderings of a run's findings: ``text`` for people, ``json`` (the documented shape),
``junit`` and ``sarif`` for CI systems to show natively."""
