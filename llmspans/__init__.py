"""llmspans: stage-level tracing for LLM pipelines."""

__all__: list[str] = []
