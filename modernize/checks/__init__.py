"""Checks of a run against something outside it: the paper's verdicts and equivalence tests
(``fidelity``), a reference run (``reference``), and the statistics both use (``stats``)."""
