"""``python -m llmspans.examples.support_rag "question"``: answer one question, show its trace."""

from __future__ import annotations

import sys

from .._cli import trace_one
from .pipeline import SupportRag

question = " ".join(sys.argv[1:]) or "How long is the password reset link valid?"
bot = SupportRag()
sys.exit(trace_one(lambda: bot.handle(question, ticket_id="T-cli")))
