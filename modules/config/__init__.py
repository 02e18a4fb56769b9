"""From a stack declaration to a ``MailDomain``: reading stack files (``stackfile``) and
finding the project's stacks (``project``), then validating every key of the
``mailstack:`` namespace (``stack`` and one module per section), collecting every
error with the key it belongs to (``reader``) so a user fixes a stack in one pass."""
