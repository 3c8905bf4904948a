"""CLI subcommands of ``module-ai``, one module each (see :mod:`module_ai.cli`)."""
