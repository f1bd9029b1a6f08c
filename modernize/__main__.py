"""``python -m modernize``: the same command line as ``run_ablation.py`` and ``modernize``."""

from .cli import main

raise SystemExit(main())
