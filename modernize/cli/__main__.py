"""``python -m modernize.cli``: the same as ``run_ablation.py`` and ``modernize``."""

from . import main

raise SystemExit(main())
