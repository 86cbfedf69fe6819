"""Alertmanager configuration for llmspans, and a webhook receiver that logs notifications."""
