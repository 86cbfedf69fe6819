"""Three small, real LLM pipelines instrumented with llmspans.

- :mod:`support_rag`: BM25 retrieval over a shipped help-centre corpus, context
  selection under a token budget, an answer that cites document ids, and a reply
  posted to a ticket store (checked afterwards).
- :mod:`sql_analyst`: schema retrieval, a generated SQL query, executed on SQLite
  and checked for *semantic* correctness against a reference query.
- :mod:`booking_agent`: extracts a booking request and books it into SQLite,
  then verifies that the reservation row exists.

Each pipeline is deterministic and needs no network: the "model" steps are
rule-based stand-ins by default (the support answerer calls any OpenAI-compatible
endpoint when ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` are set). Every pipeline
accepts an optional injected fault, ``(stage, mode)``, so that ``llmspans demo``
can break one stage on purpose and check that the collector blames that stage.
"""

#: Prices (USD per million tokens) for the local stand-in models, the same as a small
#: hosted model's, so that the demo's cost per successful outcome means something.
MODEL_PRICES: dict[str, dict[str, float]] = {
    "nimbus-extractive-1": {"input": 0.15, "output": 0.60},
    "sql-template-1": {"input": 0.15, "output": 0.60},
    "booking-extractor-1": {"input": 0.15, "output": 0.60},
}
