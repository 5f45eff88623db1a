"""The Anthropic SDK's governed method: messages.

A message stream reports usage twice: ``message_start`` carries the input side
(prompt, cache reads and writes), each ``message_delta`` the cumulative output
(and, in newer API versions, the input side again). The stream's usage is
the start's, overlaid with the last delta's; it counts as arrived only once a
``message_delta`` came, so a stream cut before settles at the reservation.
"""

from __future__ import annotations

from typing import Any

from proctor.llm._governed import Api
from proctor.llm.prices import Tokens
from proctor.llm.usage import anthropic_tokens, prompt_tokens

__all__ = ["MESSAGES", "lost_errors"]

_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def lost_errors() -> tuple[type[BaseException], ...]:
    import anthropic

    return (anthropic.APIConnectionError,)  # APITimeoutError is one


def _prompt(request: dict[str, Any]) -> int:
    return prompt_tokens(request.get("messages"), request.get("system"), request.get("tools"))


def _max(request: dict[str, Any]) -> int | None:
    value = request.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tokens(response: Any) -> Tokens | None:
    usage = getattr(response, "usage", None)
    return anthropic_tokens(usage) if usage is not None else None


def _stream_request(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    return request, True


def _stream_usage(event: Any, seen: Any) -> Any:
    kind = getattr(event, "type", None)
    if kind == "message_start":
        usage = getattr(getattr(event, "message", None), "usage", None)
        if usage is not None:
            return ({name: getattr(usage, name, None) for name in _FIELDS}, False, usage)
    elif kind == "message_delta":
        usage = getattr(event, "usage", None)
        if usage is not None:
            fields, _, start = seen if seen is not None else ({}, False, None)
            merged = dict(fields)
            for name in _FIELDS:
                value = getattr(usage, name, None)
                if value is not None:
                    merged[name] = value
            return (merged, True, start)
    return seen


def _stream_tokens(seen: Any) -> Tokens | None:
    if seen is None or not seen[1]:
        return None
    fields, _, start = seen
    tokens = anthropic_tokens(fields)
    write_1h = anthropic_tokens(start).cache_write_1h if start is not None else 0
    if write_1h:
        tokens = Tokens(
            input=tokens.input,
            output=tokens.output,
            cache_read=tokens.cache_read,
            cache_write=tokens.cache_write,
            cache_write_1h=write_1h,
        )
    return tokens


def _never(event: Any) -> bool:
    return False


MESSAGES = Api(
    tool="anthropic.messages.create",
    prompt=_prompt,
    max_output=_max,
    tokens=_tokens,
    stream_request=_stream_request,
    stream_usage=_stream_usage,
    stream_tokens=_stream_tokens,
    usage_only=_never,
    lost=(),
)
