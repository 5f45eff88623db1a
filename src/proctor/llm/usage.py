"""Usage: the tokens a response reports, and the tokens a request is estimated to cost before it runs.

The estimate is an approximation made offline, with no tokenizer: a prompt's
tokens are its characters divided by 4, rounded up (OpenAI's and Anthropic's
rule of thumb for English text), plus 4 tokens per message for the framing;
the output is the request's maximum (``max_tokens`` and its kin), or
``DEFAULT_OUTPUT_TOKENS`` when it gives none. Text in other scripts, or base64
images, is over- or under-counted; the settle from the response's usage
replaces the estimate either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proctor.llm.prices import Tokens

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "anthropic_tokens",
    "chat_tokens",
    "prompt_tokens",
    "responses_tokens",
]

DEFAULT_OUTPUT_TOKENS = 4096
"""The output a request without a maximum is estimated to produce."""
_PER_MESSAGE = 4
_MAX_DEPTH = 50


def prompt_tokens(*parts: Any) -> int:
    """The estimated tokens of a prompt made of ``parts`` (messages, input, system, tools...)."""
    counted = [0, 0]  # characters, messages
    for part in parts:
        _walk(part, counted, 0)
    characters, messages = counted
    return -(-characters // 4) + _PER_MESSAGE * messages


def _walk(value: Any, counted: list[int], depth: int) -> None:
    if depth > _MAX_DEPTH or value is None:
        return
    kind = type(value)
    if kind is str:
        counted[0] += len(value)
    elif kind is dict:  # the common case, without the ABC checks below
        if "role" in value:
            counted[1] += 1
        for item in value.values():
            _walk(item, counted, depth + 1)
    elif kind is list:
        for item in value:
            _walk(item, counted, depth + 1)
    elif isinstance(value, str):
        counted[0] += len(value)
    elif isinstance(value, Mapping):
        if "role" in value:
            counted[1] += 1
        for item in value.values():
            _walk(item, counted, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, counted, depth + 1)
    elif hasattr(value, "model_dump"):  # a pydantic model given instead of a dict
        _walk(value.model_dump(exclude_none=True), counted, depth + 1)
    # numbers, booleans and the SDKs' omit markers count nothing


def _get(value: Any, name: str) -> Any:
    """``value.name``, or ``value[name]`` for a mapping; None when it has neither."""
    if value is None:
        return None
    if type(value) is dict:
        return value.get(name)
    found = getattr(value, name, None)
    if found is None and isinstance(value, Mapping):
        return value.get(name)
    return found


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_tokens(usage: Any) -> Tokens:
    """The tokens of an OpenAI chat completion's ``usage`` (prompt tokens include cached ones)."""
    return Tokens(
        input=_count(_get(usage, "prompt_tokens")),
        output=_count(_get(usage, "completion_tokens")),
        cache_read=_count(_get(_get(usage, "prompt_tokens_details"), "cached_tokens")),
        reasoning=_count(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens")),
    )


def responses_tokens(usage: Any) -> Tokens:
    """The tokens of an OpenAI Responses API ``usage`` (input tokens include cached ones)."""
    return Tokens(
        input=_count(_get(usage, "input_tokens")),
        output=_count(_get(usage, "output_tokens")),
        cache_read=_count(_get(_get(usage, "input_tokens_details"), "cached_tokens")),
        reasoning=_count(_get(_get(usage, "output_tokens_details"), "reasoning_tokens")),
    )


def anthropic_tokens(usage: Any) -> Tokens:
    """The tokens of an Anthropic message's ``usage``: its ``input_tokens`` are the uncached ones, so
    the prompt is those plus the cache reads and writes; thinking is part of ``output_tokens``."""
    cache_read = _count(_get(usage, "cache_read_input_tokens"))
    cache_write = _count(_get(usage, "cache_creation_input_tokens"))
    return Tokens(
        input=_count(_get(usage, "input_tokens")) + cache_read + cache_write,
        output=_count(_get(usage, "output_tokens")),
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=_count(_get(_get(usage, "cache_creation"), "ephemeral_1h_input_tokens")),
    )
