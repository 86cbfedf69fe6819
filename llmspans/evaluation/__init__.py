"""Continuous evaluation on sampled production traffic (docs/evaluation.md).

An evaluator is ``def judge(run: Run) -> Judgment`` (or ``async def``): it gets one
finished, sampled run and says what it judged; a :class:`Judgment` field left None
means "not judged". The collector, the embedded mode and ``llmspans analyze
--evaluator`` call evaluators through :class:`EvaluationRunner` and turn judgments
into metrics with the same core code.
"""

from llmspans.core.judging import Document, Judgment, should_sample
from llmspans.core.judging import EvaluatedRun as Run
from llmspans.evaluation._llm_judge import JudgeError, LLMJudge
from llmspans.evaluation._runner import EvaluationRunner, Evaluator, Outcome, load_evaluator

__all__ = [
    "Document",
    "EvaluationRunner",
    "Evaluator",
    "JudgeError",
    "Judgment",
    "LLMJudge",
    "Outcome",
    "Run",
    "load_evaluator",
    "should_sample",
]
