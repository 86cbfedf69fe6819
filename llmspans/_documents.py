"""Reading document ids and scores from what a retrieval (or selection) returns.

Supported shapes, item by item:

- mappings with an id key (``id``, ``doc_id``, ``document_id``, ``_id``, ``node_id``,
  ``uuid``) or ``metadata["id"]`` (and the same keys in metadata), and a score key
  (``score``, ``relevance_score``, ``similarity``);
- objects with such attributes: dataclasses, pydantic models, LangChain
  ``Document`` (``.id`` or ``.metadata["id"]``), Qdrant ``ScoredPoint``
  (``.id``, ``.score``);
- wrappers holding a document in ``.node`` or ``.document`` (LlamaIndex
  ``NodeWithScore``: ``.node.node_id`` and ``.score``);
- ``(document, score)`` pairs, as LangChain's ``similarity_search_with_score`` returns;
- plain id strings (no whitespace, at most 256 characters) and integers.

Containers: a sequence of such items; a mapping or object holding the sequence under
``documents``, ``docs``, ``results``, ``hits``, ``matches``, ``points``, ``nodes``
or ``source_nodes``; a Chroma-style mapping of parallel lists (``{"ids": [[...]]}``).

Extraction is all or nothing: if one item has no id, nothing is recorded (ids and
scores must stay aligned), and the stage's ``record_*`` helper is the way out.
Scores are recorded only when every item has one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, cast

_ID_KEYS: Final = ("id", "doc_id", "document_id", "_id", "node_id", "uuid")
_SCORE_KEYS: Final = ("score", "relevance_score", "similarity")
_CONTAINER_KEYS: Final = (
    "documents",
    "docs",
    "results",
    "hits",
    "matches",
    "points",
    "nodes",
    "source_nodes",
)
_INNER_KEYS: Final = ("node", "document", "doc")
_TEXT_KEYS: Final = ("page_content", "text", "content", "document")
_MAX_ID_LENGTH: Final = 256
_MAX_ITEMS: Final = 10_000

Documents = tuple[list[str], list[float] | None]


def _id_value(value: object) -> str | None:
    if type(value) is str:
        return value if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    # UUIDs and similar id types print as their id.
    if type(value).__name__ == "UUID":
        return str(value)
    return None


def _score_value(value: object) -> float | None:
    # numbers.Real also admits numpy scalars (float32 scores of vector stores).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    score = float(value)
    return score if math.isfinite(score) else None


def _get(item: object, key: str) -> object:
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def _id_of(item: object, depth: int = 0) -> str | None:
    if isinstance(item, str):
        if item and len(item) <= _MAX_ID_LENGTH and not any(c.isspace() for c in item):
            return item
        return None
    direct = _id_value(item)
    if direct is not None:
        return direct
    for key in _ID_KEYS:
        found = _id_value(_get(item, key))
        if found is not None:
            return found
    metadata = _get(item, "metadata")
    if isinstance(metadata, Mapping):
        for key in (*_ID_KEYS, "source"):
            found = _id_value(metadata.get(key))
            if found is not None:
                return found
    if depth == 0:
        for key in _INNER_KEYS:
            inner = _get(item, key)
            if inner is not None and not isinstance(inner, str):
                found = _id_of(inner, depth + 1)
                if found is not None:
                    return found
    return None


def _score_of(item: object) -> float | None:
    if isinstance(item, str | numbers.Number):
        return None
    for key in _SCORE_KEYS:
        found = _score_value(_get(item, key))
        if found is not None:
            return found
    metadata = _get(item, "metadata")
    if isinstance(metadata, Mapping):
        for key in _SCORE_KEYS:
            found = _score_value(metadata.get(key))
            if found is not None:
                return found
    return None


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _is_pair(item: object) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and _score_value(item[1]) is not None
        and not isinstance(item[0], numbers.Number)
    )


def _from_common_items(items: Sequence[object]) -> Documents | None:
    """The hot path: dicts with ``"id"`` and ``"score"`` keys, or objects with ``id`` and
    ``score`` attributes, ids non-empty strings and scores finite numbers.

    Plain comprehensions and exact type checks, no per-item calls; ``None`` sends the
    caller to the general path, which gives the same answer for these shapes.
    """
    try:
        if type(items[0]) is dict:
            ids = [item["id"] for item in items]  # type: ignore[index]  # dicts, see except
            scores = [item["score"] for item in items]  # type: ignore[index]
        else:
            ids = [item.id for item in items]  # type: ignore[attr-defined]  # see except
            scores = [item.score for item in items]  # type: ignore[attr-defined]
    except Exception:  # not this shape: the general path decides
        return None
    for doc_id in ids:
        if type(doc_id) is not str or not doc_id:
            return None
    for score in scores:
        if type(score) is not float:
            if type(score) is not int:
                return None
            scores = [float(value) for value in scores]
            break
    # The sum of finite numbers is finite (barring overflow, which only costs the fast path).
    if not math.isfinite(sum(scores)):
        return None
    return ids, scores


def _from_items(items: Sequence[object]) -> Documents | None:
    if 0 < len(items) <= _MAX_ITEMS:
        common = _from_common_items(items)
        if common is not None:
            return common
    ids: list[str] = []
    scores: list[float] | None = []
    for item in items[:_MAX_ITEMS]:
        score: float | None
        if _is_pair(item):
            pair = cast(tuple[object, object], item)
            doc, score = pair[0], _score_value(pair[1])
        else:
            doc, score = item, _score_of(item)
        doc_id = _id_of(doc)
        if doc_id is None:
            return None
        ids.append(doc_id)
        if scores is not None:
            if score is None:
                scores = None
            else:
                scores.append(score)
    return ids, (scores if scores else None)


def _parallel_lists(mapping: Mapping[object, object]) -> Documents | None:
    """Chroma's query result: ``{"ids": [[...]], "distances": [[...]]}`` (or flat lists)."""
    raw_ids = mapping.get("ids")
    if not _is_sequence(raw_ids):
        return None
    assert isinstance(raw_ids, Sequence)
    if raw_ids and _is_sequence(raw_ids[0]):
        raw_ids = raw_ids[0]
    ids = [_id_value(value) for value in raw_ids]
    if any(value is None for value in ids):
        return None
    return [value for value in ids if value is not None], None


def extract_documents(value: object) -> Documents | None:
    """``(ids, scores)`` of the documents in ``value``, or ``None`` if they cannot be read.

    An empty sequence gives ``([], None)``: "no documents" is a fact worth recording.
    """
    if type(value) is list:
        return _from_items(value)
    if value is None or isinstance(value, str | bytes | bytearray):
        return None
    if _is_sequence(value):
        assert isinstance(value, Sequence)
        return _from_items(value)
    if isinstance(value, Mapping) and "ids" in value:
        return _parallel_lists(value)
    for key in _CONTAINER_KEYS:
        inner = _get(value, key)
        if _is_sequence(inner):
            assert isinstance(inner, Sequence)
            return _from_items(inner)
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return None
    # A single document.
    doc_id = _id_of(value)
    if doc_id is None:
        return None
    score = _score_of(value)
    return [doc_id], ([score] if score is not None else None)


def document_texts(value: object) -> list[str] | None:
    """The text of each document in ``value`` (for content capture), or ``None``."""
    if isinstance(value, Mapping) and "ids" in value:
        return _parallel_texts(value)
    items: object = value
    if not _is_sequence(items):
        for key in _CONTAINER_KEYS:
            inner = _get(value, key)
            if _is_sequence(inner):
                items = inner
                break
        else:
            return None
    assert isinstance(items, Sequence)
    texts: list[str] = []
    for item in items[:_MAX_ITEMS]:
        doc = cast(tuple[object, object], item)[0] if _is_pair(item) else item
        text = _text_of(doc)
        if text is None:
            for key in _INNER_KEYS:
                inner = _get(doc, key)
                if inner is not None and not isinstance(inner, str):
                    text = _text_of(inner)
                    if text is not None:
                        break
        texts.append(text if text is not None else "")
    return texts


def _parallel_texts(mapping: Mapping[object, object]) -> list[str] | None:
    """Chroma's ``documents`` beside its ``ids``: the first ranked list, as ``_parallel_lists``."""
    texts = mapping.get("documents")
    if not _is_sequence(texts):
        return None
    assert isinstance(texts, Sequence)
    if texts and _is_sequence(texts[0]):
        texts = texts[0]
    assert isinstance(texts, Sequence)
    return [text if isinstance(text, str) else "" for text in texts[:_MAX_ITEMS]]


def _text_of(doc: object) -> str | None:
    if isinstance(doc, str):
        return doc
    for key in _TEXT_KEYS:
        found = _get(doc, key)
        if isinstance(found, str):
            return found
    getter = getattr(doc, "get_content", None)
    if callable(getter):
        try:
            content = getter()
        except Exception:
            return None
        return content if isinstance(content, str) else None
    return None
