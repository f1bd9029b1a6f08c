#!/usr/bin/env python3
"""Command line of the modernize toolkit: `python run_ablation.py --help`."""

from modernize.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
