"""Prometheus recording and alert rules for llmspans, rendered from ``profiles.yaml``."""
