"""Grafana provisioning for llmspans: data sources and the dashboards built by ``build.py``."""
