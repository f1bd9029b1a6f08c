"""The hostile battery (issue 11 and issue 28): its harness (``harness.py``), its cases
(``cases_*.py``) and its server (``server.py``); ``tests/test_battery.py`` runs every case as one
pytest test.

Adding a case: a function of ``Ctx`` registered with ``@case("id")`` in the ``cases_*.py`` of its
topic (or a row of one of their tables: ``RECIPE_FAULTS``, ``ROADMAP_FAULTS``, ``OUT_FAULTS``,
...). ``ctx.refused(argv, culprit)`` expects exit 2 with one error line naming the culprit and the
run folder unchanged; ``ctx.ok(argv)`` exit 0; ``ctx.trained()`` copies the server's finished tiny
run; ``ctx.done(top1)`` checks the job's result and the report::

    @case("report-my-hostile-input")
    def _my_case(ctx: Ctx) -> None:
        ctx.trained()
        (ctx.run / "run.json").write_text("{}")
        ctx.refused(report(ctx), "run.json")
"""
