"""Captured content in the GenAI semantic conventions' ``parts`` shape.

``gen_ai.input.messages`` and ``gen_ai.output.messages`` are JSON arrays of
messages, each ``{"role": ..., "parts": [...]}`` (an output message also has its
``finish_reason``); ``gen_ai.system_instructions`` is a JSON array of parts. A part
is one of

- ``{"type": "text", "content": ...}``,
- ``{"type": "reasoning", "content": ...}`` (a model's thinking, where it shows it),
- ``{"type": "tool_call", "id": ..., "name": ..., "arguments": ...}``,
- ``{"type": "tool_call_response", "id": ..., "response": ...}``,
- ``{"type": "uri", "modality": ..., "uri": ...}`` for media given by URL, and
  ``{"type": "blob" | "file", "modality": ...}`` for inline media and uploaded
  files, whose bytes are left out (they are not text, and they are large).

Roles are the conventions' ``system``, ``user``, ``assistant`` and ``tool``
(Gemini's ``model`` is ``assistant``). The readers below turn each provider's
request and response shapes into these; they never raise on a shape they do not
know (an unknown part is kept as ``{"type": <its type>}``).

Bound: a message list is converted only as far as can be recorded. Content is cut
at ``max_length()`` characters when it is recorded (``llmspans._content``), so a
reader stops once the text it has gathered passes that length, and cuts the text
of the part that passes it: a request with a million messages costs no more to
capture than one that fills the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from llmspans._content import max_length
from llmspans.instrumentation._base import as_str, field_of

Part = dict[str, Any]
Message = dict[str, Any]

SYSTEM: Final = "system"
USER: Final = "user"
ASSISTANT: Final = "assistant"
TOOL: Final = "tool"

#: What a message costs the budget beyond its text: its role and JSON punctuation.
_MESSAGE_OVERHEAD: Final = 32
#: What a part that is not text (a tool call, an image) costs the budget.
_PART_OVERHEAD: Final = 32

_ROLES: Final = {
    "model": ASSISTANT,
    "ai": ASSISTANT,
    "human": USER,
    "developer": SYSTEM,
    "function": TOOL,
}


class Budget:
    """How much more text a conversion may gather before it stops (see the module docstring)."""

    __slots__ = ("left",)

    def __init__(self, limit: int | None = None) -> None:
        self.left = (max_length() if limit is None else limit) + 1

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def text(self, value: str) -> str:
        """``value``, cut to what is left; what it keeps is spent."""
        kept = value[: max(self.left, 0)]
        self.left -= len(kept) if len(kept) == len(value) else len(kept) + 1
        return kept

    def spend(self, amount: int) -> None:
        self.left -= amount


def text_part(content: str, budget: Budget) -> Part:
    return {"type": "text", "content": budget.text(content)}


def reasoning_part(content: str, budget: Budget) -> Part:
    return {"type": "reasoning", "content": budget.text(content)}


def tool_call_part(call_id: Any, name: Any, arguments: Any, budget: Budget) -> Part:
    """A tool call; ``arguments`` given as a JSON string are decoded (the conventions
    record them as an object), kept as given when they are not JSON."""
    budget.spend(_PART_OVERHEAD)
    part: Part = {"type": "tool_call", "id": as_str(call_id), "name": as_str(name)}
    if isinstance(arguments, str):
        text = budget.text(arguments)
        try:
            arguments = json.loads(text) if len(text) == len(arguments) else text
        except ValueError:
            arguments = text
    if arguments is not None:
        part["arguments"] = arguments
    return part


def tool_response_part(call_id: Any, response: Any, budget: Budget) -> Part:
    budget.spend(_PART_OVERHEAD)
    if isinstance(response, str):
        response = budget.text(response)
    return {"type": "tool_call_response", "id": as_str(call_id), "response": response}


def media_part(kind: str, modality: str | None, budget: Budget, uri: Any = None) -> Part:
    """A ``uri`` / ``blob`` / ``file`` part: the kind of media, and its URL when it is one
    (a ``data:`` URL is inline bytes: a blob, left out)."""
    budget.spend(_PART_OVERHEAD)
    url = as_str(uri)
    if url is not None and url.startswith("data:"):
        kind, url = "blob", None
    part: Part = {"type": "uri" if url is not None else kind}
    if modality is not None:
        part["modality"] = modality
    if url is not None:
        part["uri"] = budget.text(url)
    return part


def other_part(kind: Any, budget: Budget) -> Part:
    budget.spend(_PART_OVERHEAD)
    return {"type": as_str(kind) or "unknown"}


def role_of(value: Any, default: str = USER) -> str:
    role = as_str(value)
    if role is None:
        return default
    return _ROLES.get(role, role)


def message(role: str, parts: list[Part], finish_reason: str | None = None) -> Message:
    found: Message = {"role": role, "parts": parts}
    if finish_reason is not None:
        found["finish_reason"] = finish_reason
    return found


def convert(
    items: Any,
    read: Callable[[Any, Budget], Message | None],
    budget: Budget | None = None,
) -> list[Message] | None:
    """``read`` applied to each item of ``items`` (a list, or one item), while the budget lasts."""
    if items is None:
        return None
    budget = budget or Budget()
    messages: list[Message] = []
    for item in _items(items):
        if budget.spent:
            break
        budget.spend(_MESSAGE_OVERHEAD)
        found = read(item, budget)
        if found is not None:
            messages.append(found)
    return messages


def _items(value: Any) -> Iterable[Any]:
    if isinstance(value, list | tuple):
        return value
    return (value,)


def prompt_messages(prompt: Any, budget: Budget | None = None) -> list[Message] | None:
    """A plain prompt (a string, or a list of strings) as user messages."""
    return convert(prompt, _prompt_message, budget)


def _prompt_message(item: Any, budget: Budget) -> Message | None:
    if isinstance(item, str):
        return message(USER, [text_part(item, budget)])
    return None


def text_parts(content: Any, budget: Budget) -> list[Part]:
    """Parts of a content that is a string, or a list of strings and ``{"text": ...}`` blocks."""
    if isinstance(content, str):
        return [text_part(content, budget)]
    parts: list[Part] = []
    for block in _items(content) if content is not None else ():
        if budget.spent:
            break
        text = block if isinstance(block, str) else as_str(field_of(block, "text"))
        if text is not None:
            parts.append(text_part(text, budget))
    return parts


def system_instructions(value: Any, budget: Budget | None = None) -> list[Part] | None:
    """``gen_ai.system_instructions``: the text parts of a system prompt given apart from
    the messages (a string, or a list of text blocks)."""
    if value is None:
        return None
    parts = text_parts(value, budget or Budget())
    return parts or None


# --- OpenAI chat completions (and everything OpenAI-shaped: LiteLLM) -------------------


BlockReader = Callable[[str | None, Any, Budget], Part]
"""Reads one typed content block (its ``type``, the block) into a part."""


def typed_blocks(content: Any, budget: Budget, read: BlockReader) -> list[Part]:
    """The parts of a content that is a string, or a list of blocks with a ``type``
    (OpenAI's and Anthropic's), each read by ``read`` while the budget lasts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content, budget)]
    parts: list[Part] = []
    for block in _items(content):
        if budget.spent:
            break
        parts.append(read(as_str(field_of(block, "type")), block, budget))
    return parts


def _openai_block(kind: str | None, block: Any, budget: Budget) -> Part:
    if kind in {"text", "input_text", "output_text"}:
        return text_part(as_str(field_of(block, "text")) or "", budget)
    if kind == "refusal":
        return text_part(as_str(field_of(block, "refusal")) or "", budget)
    if kind == "image_url":
        return media_part("blob", "image", budget, field_of(field_of(block, "image_url"), "url"))
    if kind == "input_image":
        url = field_of(block, "image_url")
        return media_part("file" if url is None else "blob", "image", budget, url)
    if kind == "input_audio":
        return media_part("blob", "audio", budget)
    if kind in {"file", "input_file"}:
        return media_part("file", None, budget, field_of(block, "file_url"))
    return other_part(kind, budget)


def openai_content_parts(content: Any, budget: Budget) -> list[Part]:
    """The parts of an OpenAI message ``content`` (chat completions and the Responses API)."""
    return typed_blocks(content, budget, _openai_block)


def _openai_tool_calls(tool_calls: Any, budget: Budget) -> Iterator[Part]:
    for tool_call in tool_calls or ():
        function = field_of(tool_call, "function")
        yield tool_call_part(
            field_of(tool_call, "id"),
            field_of(function, "name"),
            field_of(function, "arguments"),
            budget,
        )


def _openai_chat_message(item: Any, budget: Budget, finish_reason: str | None = None) -> Message:
    role = role_of(field_of(item, "role"))
    content = field_of(item, "content")
    if role == TOOL:
        response = content if isinstance(content, str) else _joined_text(content)
        parts = [tool_response_part(field_of(item, "tool_call_id"), response, budget)]
    else:
        parts = openai_content_parts(content, budget)
    refusal = as_str(field_of(item, "refusal"))
    if refusal is not None:
        parts.append(text_part(refusal, budget))
    parts.extend(_openai_tool_calls(field_of(item, "tool_calls"), budget))
    return message(role, parts, finish_reason)


def _joined_text(content: Any) -> str | None:
    texts = [part["content"] for part in text_parts(content, Budget()) if part.get("content")]
    return "\n".join(texts) if texts else None


def openai_chat_input(messages: Any) -> list[Message] | None:
    """Chat-completion ``messages`` (system and developer messages stay in the history,
    where the API takes them)."""
    return convert(messages, _openai_chat_message)


def openai_chat_output(choices: Iterable[Any]) -> list[Message]:
    """The choices of a chat completion (or of a legacy completion: their ``text``)."""
    budget = Budget()
    found: list[Message] = []
    for choice in choices:
        if budget.spent:
            break
        budget.spend(_MESSAGE_OVERHEAD)
        reason = as_str(field_of(choice, "finish_reason"))
        content = field_of(choice, "message")
        if content is None:
            text = as_str(field_of(choice, "text"))
            found.append(message(ASSISTANT, text_parts(text, budget), reason))
        else:
            found.append(_openai_chat_message(content, budget, reason))
            found[-1]["role"] = ASSISTANT
    return found


# --- OpenAI Responses API ------------------------------------------------------------


def _response_item(item: Any, budget: Budget) -> Message | None:
    kind = as_str(field_of(item, "type"))
    if isinstance(item, str):
        return message(USER, [text_part(item, budget)])
    if kind == "function_call":
        part = tool_call_part(
            field_of(item, "call_id"), field_of(item, "name"), field_of(item, "arguments"), budget
        )
        return message(ASSISTANT, [part])
    if kind == "function_call_output":
        return message(
            TOOL, [tool_response_part(field_of(item, "call_id"), field_of(item, "output"), budget)]
        )
    if kind == "reasoning":
        return message(ASSISTANT, _reasoning_summary(item, budget))
    if kind in {None, "message"}:
        return message(
            role_of(field_of(item, "role")), openai_content_parts(field_of(item, "content"), budget)
        )
    return message(ASSISTANT, [other_part(kind, budget)])


def _reasoning_summary(item: Any, budget: Budget) -> list[Part]:
    return [
        reasoning_part(text, budget)
        for summary in field_of(item, "summary") or ()
        if (text := as_str(field_of(summary, "text"))) is not None
    ]


def responses_input(value: Any) -> list[Message] | None:
    """The ``input`` of ``responses.create``: a string, or a list of items."""
    return convert(value, _response_item)


def responses_output(response: Any, finish_reason: str | None) -> list[Message]:
    """A response's ``output`` items, as one assistant message."""
    budget = Budget()
    parts: list[Part] = []
    for item in field_of(response, "output") or ():
        if budget.spent:
            break
        kind = as_str(field_of(item, "type"))
        if kind == "message":
            parts.extend(openai_content_parts(field_of(item, "content"), budget))
        elif kind == "function_call":
            parts.append(
                tool_call_part(
                    field_of(item, "call_id"),
                    field_of(item, "name"),
                    field_of(item, "arguments"),
                    budget,
                )
            )
        elif kind == "reasoning":
            parts.extend(_reasoning_summary(item, budget))
        else:
            parts.append(other_part(kind, budget))
    return [message(ASSISTANT, parts, finish_reason)]


# --- Anthropic Messages (also Bedrock's invoke_model body for Claude) -----------------


def _anthropic_block(kind: str | None, block: Any, budget: Budget) -> Part:
    if kind == "text":
        return text_part(as_str(field_of(block, "text")) or "", budget)
    if kind in {"thinking", "redacted_thinking"}:
        return reasoning_part(as_str(field_of(block, "thinking")) or "", budget)
    if kind in {"tool_use", "server_tool_use"}:
        return tool_call_part(
            field_of(block, "id"), field_of(block, "name"), field_of(block, "input"), budget
        )
    if kind == "tool_result":
        result = field_of(block, "content")
        response = result if isinstance(result, str) else _joined_text(result)
        return tool_response_part(field_of(block, "tool_use_id"), response, budget)
    if kind in {"image", "document"}:
        source = field_of(block, "source")
        uri = field_of(source, "url") if as_str(field_of(source, "type")) == "url" else None
        return media_part("blob", "image" if kind == "image" else None, budget, uri)
    return other_part(kind, budget)


def anthropic_blocks(content: Any, budget: Budget) -> list[Part]:
    """The parts of an Anthropic message ``content`` (also Claude's ``invoke_model`` body)."""
    return typed_blocks(content, budget, _anthropic_block)


def _history(blocks: Callable[[Any, Budget], list[Part]]) -> Callable[[Any, Budget], Message]:
    """The reader of a message ``{"role", "content": blocks}`` whose blocks ``blocks`` reads."""

    def read(item: Any, budget: Budget) -> Message:
        return message(role_of(field_of(item, "role")), blocks(field_of(item, "content"), budget))

    return read


def anthropic_input(messages: Any) -> list[Message] | None:
    return convert(messages, _history(anthropic_blocks))


def anthropic_output(content: Any, stop_reason: str | None) -> list[Message]:
    return [message(ASSISTANT, anthropic_blocks(content, Budget()), stop_reason)]


# --- Bedrock Converse ----------------------------------------------------------------


def converse_blocks(content: Any, budget: Budget) -> list[Part]:
    parts: list[Part] = []
    for block in _items(content) if content is not None else ():
        if budget.spent:
            break
        if not isinstance(block, Mapping):
            continue
        if "text" in block:
            parts.append(text_part(as_str(block["text"]) or "", budget))
        elif "toolUse" in block:
            use = block["toolUse"]
            parts.append(
                tool_call_part(
                    field_of(use, "toolUseId"),
                    field_of(use, "name"),
                    field_of(use, "input"),
                    budget,
                )
            )
        elif "toolResult" in block:
            result = block["toolResult"]
            response = [
                item.get("json", item.get("text")) if isinstance(item, Mapping) else item
                for item in field_of(result, "content") or ()
            ]
            single = response[0] if len(response) == 1 else response
            parts.append(tool_response_part(field_of(result, "toolUseId"), single, budget))
        elif "reasoningContent" in block:
            text = field_of(field_of(block["reasoningContent"], "reasoningText"), "text")
            parts.append(reasoning_part(as_str(text) or "", budget))
        elif "image" in block or "video" in block:
            parts.append(media_part("blob", "image" if "image" in block else "video", budget))
        elif "document" in block:
            parts.append(media_part("file", None, budget))
        elif "cachePoint" not in block:
            parts.append(other_part(next(iter(block), None), budget))
    return parts


def converse_input(messages: Any) -> list[Message] | None:
    return convert(messages, _history(converse_blocks))


def converse_output(output_message: Any, stop_reason: str | None) -> list[Message]:
    parts = converse_blocks(field_of(output_message, "content"), Budget())
    return [message(ASSISTANT, parts, stop_reason)]


# --- Google Gen AI -------------------------------------------------------------------


def gemini_parts(parts: Any, budget: Budget) -> list[Part]:
    """The parts of a ``Content`` (objects or dicts, in the SDK's snake_case)."""
    found: list[Part] = []
    for part in _items(parts) if parts is not None else ():
        if budget.spent:
            break
        if isinstance(part, str):
            found.append(text_part(part, budget))
            continue
        text = as_str(field_of(part, "text"))
        call = field_of(part, "function_call")
        response = field_of(part, "function_response")
        inline = field_of(part, "inline_data")
        file_data = field_of(part, "file_data")
        if text is not None:
            thought = field_of(part, "thought") is True
            found.append((reasoning_part if thought else text_part)(text, budget))
        elif call is not None:
            found.append(
                tool_call_part(
                    field_of(call, "id"), field_of(call, "name"), field_of(call, "args"), budget
                )
            )
        elif response is not None:
            found.append(
                tool_response_part(field_of(response, "id"), field_of(response, "response"), budget)
            )
        elif inline is not None:
            found.append(media_part("blob", _modality(field_of(inline, "mime_type")), budget))
        elif file_data is not None:
            modality = _modality(field_of(file_data, "mime_type"))
            found.append(media_part("file", modality, budget, field_of(file_data, "file_uri")))
        else:
            found.append(other_part("unknown", budget))
    return found


def _modality(mime_type: Any) -> str | None:
    kind = (as_str(mime_type) or "").partition("/")[0]
    return kind if kind in {"image", "video", "audio"} else None


def _is_content(value: Any) -> bool:
    return field_of(value, "parts") is not None or field_of(value, "role") is not None


def gemini_input(contents: Any) -> list[Message] | None:
    """``contents``: a string, a ``Content``, a part, or a list of them; loose strings and
    parts next to each other are one user message, as the SDK sends them."""
    if contents is None:
        return None
    budget = Budget()
    messages: list[Message] = []
    loose: list[Any] = []

    def flush() -> None:
        if loose:
            budget.spend(_MESSAGE_OVERHEAD)
            messages.append(message(USER, gemini_parts(loose, budget)))
            loose.clear()

    for item in _items(contents):
        if budget.spent:
            break
        if _is_content(item):
            flush()
            budget.spend(_MESSAGE_OVERHEAD)
            role = role_of(field_of(item, "role"))
            messages.append(message(role, gemini_parts(field_of(item, "parts"), budget)))
        else:
            loose.append(item)
    flush()
    return messages


def gemini_system_instructions(value: Any) -> list[Part] | None:
    """``config.system_instruction``: a string, a part, a ``Content`` or a list of them."""
    if value is None:
        return None
    budget = Budget()
    parts = gemini_parts(field_of(value, "parts") if _is_content(value) else value, budget)
    return parts or None


def gemini_output(candidates: Iterable[Any], reason: Callable[[Any], str | None]) -> list[Message]:
    budget = Budget()
    found: list[Message] = []
    for candidate in candidates:
        if budget.spent:
            break
        budget.spend(_MESSAGE_OVERHEAD)
        parts = gemini_parts(field_of(field_of(candidate, "content"), "parts"), budget)
        found.append(message(ASSISTANT, parts, reason(candidate)))
    return found


# --- LangChain messages --------------------------------------------------------------


def _langchain_message(item: Any, budget: Budget) -> Message | None:
    if isinstance(item, str):
        return message(USER, [text_part(item, budget)])
    if isinstance(item, tuple) and len(item) == 2:
        return message(role_of(item[0]), text_parts(item[1], budget))
    role = role_of(field_of(item, "type") or field_of(item, "role"))
    content = field_of(item, "content")
    if role == TOOL:
        response = content if isinstance(content, str) else _joined_text(content)
        return message(TOOL, [tool_response_part(field_of(item, "tool_call_id"), response, budget)])
    parts = text_parts(content, budget)
    for tool_call in field_of(item, "tool_calls") or ():
        parts.append(
            tool_call_part(
                field_of(tool_call, "id"),
                field_of(tool_call, "name"),
                field_of(tool_call, "args"),
                budget,
            )
        )
    return message(role, parts)


def langchain_input(messages: Any) -> list[Message] | None:
    """A chat model's input: a string, a prompt value, or a list of messages (objects,
    ``(role, text)`` pairs or strings)."""
    to_messages = getattr(messages, "to_messages", None)
    if callable(to_messages):
        messages = to_messages()
    return convert(messages, _langchain_message)


def langchain_output(messages: Iterable[Any], reasons: Iterable[str | None]) -> list[Message]:
    budget = Budget()
    found: list[Message] = []
    for item, reason in zip(messages, reasons, strict=False):
        if budget.spent:
            break
        budget.spend(_MESSAGE_OVERHEAD)
        converted = _langchain_message(item, budget)
        if converted is not None:
            converted["role"] = ASSISTANT
            if reason is not None:
                converted["finish_reason"] = reason
            found.append(converted)
    return found
