"""Traffic for the alerting stack: an instrumented pipeline with injected faults.

``python -m collector.traffic`` runs :class:`~collector.traffic.pipeline.SupportPipeline`
at a steady rate with a few percent of failures per stage, then a spike of one
stage's failures, over OTLP to one or more collectors (docker-compose.yml's
``traffic`` service, and the live alerting test).
"""
