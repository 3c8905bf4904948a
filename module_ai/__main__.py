"""``python -m module_ai`` runs the ``module-ai`` CLI."""

from module_ai.cli import main

raise SystemExit(main())
