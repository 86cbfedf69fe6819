"""An LLM judge over any OpenAI-compatible chat endpoint.

One chat call per run judges the three things a run's metrics need: which of the
documents shown are relevant to the input, whether each cited document supports the
claim it is cited for, and whether the answer is correct. The instructions are
adapted from Arize Phoenix's evaluation templates (RAG relevance, Q&A correctness,
hallucination against a reference), merged into one request that asks for a JSON
object; the reply is validated with pydantic. A reply that is not that object (not
JSON, too large, too deeply nested, a wrong shape) raises :class:`JudgeError`: the
runner counts it as an ``error`` verdict and no verdict is guessed.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmspans.core.judging import EvaluatedRun, Judgment
from llmspans.cost import cost_usd

__all__ = ["JudgeError", "LLMJudge"]

#: Bytes of a reply read at most; a longer reply is an error.
MAX_REPLY_BYTES: Final = 256 * 1024

_SYSTEM: Final = """You are an impartial evaluator of a retrieval-augmented answer.
You are given a question, reference documents (each with an id), an answer, and the
claims the answer cites documents for. Judge only from the data given.

1. Relevance: for each reference document, determine whether it contains information
   that can answer the very specific question. A document is "relevant" only if it
   contains an answer to the question; otherwise it is "irrelevant".
2. Citation support: for each cited document id, determine whether the document's
   text supports the claim it is cited for. "supported" means the claim follows from
   the document; "unsupported" means it does not, or contradicts it.
3. Correctness: determine whether the answer correctly and fully answers the question
   based on the reference documents. "correct" means correctly and fully answered;
   "incorrect" means not answered, or only partially or wrongly; "unknown" when the
   documents do not allow a decision.

Reply with one JSON object and nothing else:
{"relevant_ids": [ids of relevant documents],
 "citations": {"<cited id>": "supported" | "unsupported"},
 "correct": "correct" | "incorrect" | "unknown",
 "explanation": "one or two sentences"}"""


class JudgeError(Exception):
    """The judge gave no usable verdict (an HTTP failure after retries, a malformed reply)."""


class _Verdict(BaseModel):
    """The judge's reply, validated."""

    model_config = ConfigDict(extra="ignore")

    relevant_ids: list[str] = Field(max_length=10_000)
    citations: dict[str, Literal["supported", "unsupported"]] = Field(default_factory=dict)
    correct: Literal["correct", "incorrect", "unknown"]
    explanation: str = Field(default="", max_length=4000)


class LLMJudge:
    """An evaluator that asks a chat model (``POST {base_url}/chat/completions``).

    ``api_key_env`` names the environment variable holding the key (read at each call,
    never stored). At most ``max_documents`` documents (the first in rank order) of at
    most ``max_document_chars`` characters each are sent; the input and the answer are
    cut to ``max_text_chars``. A call is retried ``retries`` times on connection errors,
    timeouts, HTTP 429 and 5xx, never on a malformed reply. The cost is computed from
    the reply's token usage with the price table of :mod:`llmspans.cost`, or with
    ``usd_per_input_token`` / ``usd_per_output_token`` when given.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 30.0,
        retries: int = 2,
        max_documents: int = 20,
        max_document_chars: int = 4000,
        max_text_chars: int = 4000,
        usd_per_input_token: float | None = None,
        usd_per_output_token: float | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.max_documents = max_documents
        self.max_document_chars = max_document_chars
        self.max_text_chars = max_text_chars
        self.usd_per_input_token = usd_per_input_token
        self.usd_per_output_token = usd_per_output_token
        self.__name__ = f"llm_judge:{model}"

    def prompt(self, run: EvaluatedRun) -> str:
        """The user message: what is sent to the judge (bounded, docs/evaluation.md)."""
        cut = self.max_text_chars
        lines = ["[BEGIN DATA]", "************", f"[Question]: {(run.input or '')[:cut]}"]
        for document in run.documents[: self.max_documents]:
            text = (document.text or "")[: self.max_document_chars]
            lines += ["************", f"[Reference {json.dumps(document.id)}]: {text}"]
        lines += ["************", f"[Answer]: {(run.answer or '')[:cut]}"]
        shown = {document.id for document in run.documents[: self.max_documents]}
        cited = {doc: claim for doc, claim in run.citations.items() if doc in shown}
        if cited:
            lines += ["************", "[Cited claims]:"]
            lines += [f"- {json.dumps(doc)}: {(claim or '')[:cut]}" for doc, claim in cited.items()]
        lines += ["[END DATA]"]
        return "\n".join(lines)

    def __call__(self, run: EvaluatedRun) -> Judgment:
        body = json.dumps(
            {
                "model": self.model,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": _SYSTEM},
                    {"role": "user", "content": self.prompt(run)},
                ],
            }
        ).encode()
        reply = self._post(body)
        return self._judgment(run, reply)

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, 0.1 * 2**attempt))
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read(MAX_REPLY_BYTES + 1)
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
                if error.code == 429 or error.code >= 500:
                    continue
                raise JudgeError(problem) from None
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                problem = f"{type(error).__name__}: {error}"
                continue
            if len(raw) > MAX_REPLY_BYTES:
                raise JudgeError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            try:
                decoded = json.loads(raw)
            except (ValueError, RecursionError):
                raise JudgeError("reply is not JSON") from None
            if not isinstance(decoded, dict):
                raise JudgeError("reply is not a JSON object")
            return decoded
        raise JudgeError(f"no reply after {self.retries + 1} attempts ({problem})")

    def _judgment(self, run: EvaluatedRun, reply: dict[str, Any]) -> Judgment:
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError("reply has no message content") from None
        if not isinstance(content, str):
            raise JudgeError("message content is not text")
        try:
            verdict = _Verdict.model_validate_json(content)
        except (ValidationError, ValueError, RecursionError) as error:
            raise JudgeError(f"malformed verdict: {str(error)[:300]}") from None
        shown = [document.id for document in run.documents[: self.max_documents]]
        shown_set = set(shown)
        judged_cited = {doc: v for doc, v in verdict.citations.items() if doc in run.citations}
        correct = {"correct": True, "incorrect": False, "unknown": None}[verdict.correct]
        return Judgment(
            relevant_ids=[doc for doc in dict.fromkeys(verdict.relevant_ids) if doc in shown_set],
            supported_citations=[d for d, v in judged_cited.items() if v == "supported"],
            unsupported_citations=[d for d, v in judged_cited.items() if v == "unsupported"],
            correct=correct,
            explanation=verdict.explanation or None,
            cost_usd=self._cost(reply.get("usage")),
        )

    def _cost(self, usage: Any) -> float:
        if not isinstance(usage, dict):
            return 0.0
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return 0.0
        if self.usd_per_input_token is not None or self.usd_per_output_token is not None:
            return prompt * (self.usd_per_input_token or 0.0) + completion * (
                self.usd_per_output_token or 0.0
            )
        return cost_usd(self.model, prompt, completion) or 0.0
