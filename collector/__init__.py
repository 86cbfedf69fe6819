"""The operations kit, as it lives in the repository (not installed with the wheel).

Generators for the Prometheus rules (``collector/prometheus/render.py``) and the
Grafana dashboards (``collector/grafana/build.py``), next to the files they write
and the stack's other configuration. The collector service itself is
:mod:`llmspans.collector`.
"""
