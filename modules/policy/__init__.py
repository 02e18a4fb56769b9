"""The Pulumi CrossGuard policy pack's rules: DNS resources as the engine shows them
turned back into ``Record`` values (``resources``), what the pack knows about the stack
(``context``), and the policies applying the rule modules (``policies``). The pack's
entry point, the top-level ``policy/__main__.py``, only constructs the pack."""
