"""Support RAG: answer product questions from a help-centre corpus, citing the documents used."""

from .pipeline import SupportRag

__all__ = ["SupportRag"]
