"""How checks run: ``Finding`` values with stable ids, the ``@check`` registry, the
``CheckContext`` shared by a run's checks, and the runner that isolates each check."""
