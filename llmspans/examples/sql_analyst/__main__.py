"""``python -m llmspans.examples.sql_analyst "question"``: one question answered in SQL, traced."""

from __future__ import annotations

import sys

from .._cli import trace_one
from .pipeline import SqlAnalyst

question = " ".join(sys.argv[1:]) or "How many customers are in France?"
analyst = SqlAnalyst()
reference = next((q.reference_sql for q in analyst.questions if q.question == question), None)
sys.exit(trace_one(lambda: analyst.answer(question, reference_sql=reference)))
