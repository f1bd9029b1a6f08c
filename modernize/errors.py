"""Error types. Every user-facing failure is a ``ModernizeError``: the CLI prints its
one-line message and exits with code 2 (no traceback)."""

from __future__ import annotations


class ModernizeError(ValueError):
    """Bad input from the user: a spec value, a roadmap or recipe file, a flag."""


class SpecError(ModernizeError):
    """An ``ArchSpec`` field has a value outside the design space."""


class PreconditionError(ModernizeError):
    """A transform was applied to a spec it cannot change (a step it needs is missing)."""


class ConfigError(ModernizeError):
    """A roadmap / recipe file or a command-line value is malformed."""


class WriteError(ModernizeError):
    """A file could not be written (disk full, read-only, quota, its folder moved away): the
    message names the path; what was there before is left as it was."""
