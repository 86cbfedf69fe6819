"""The pure core: span records in, runs, verdicts and metric observations out.

No I/O and no global state: the collector, the embedded mode and offline analysis
(``llmspans analyze``) all call the same functions, so their numbers agree by
construction. Nothing here imports the ``collector`` package.
"""
