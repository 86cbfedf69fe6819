"""``python -m llmspans.examples.booking_agent "request"``: book one request, show its trace."""

from __future__ import annotations

import sys

from .._cli import trace_one
from .pipeline import BookingAgent

text = " ".join(sys.argv[1:]) or "Table for 2 on March 15 at 8pm, under the name Lindqvist."
agent = BookingAgent()
sys.exit(trace_one(lambda: agent.handle(text)))
