"""The OpenAI SDK's governed methods: chat completions and the Responses API.

A chat completion stream reports usage only when asked with
``stream_options={"include_usage": True}``: proctor always asks (merging it into
the caller's ``stream_options``), and when the caller had not asked, the extra
last chunk it brings (no choices, only usage) is kept from the caller, who
sees the chunks the stream would have had without proctor. A caller who asked
gets it as usual. A Responses API stream always reports usage, in its
``response.completed`` (or ``.incomplete``, ``.failed``) event.
"""

from __future__ import annotations

from typing import Any

from proctor.llm._governed import Api
from proctor.llm.prices import Tokens
from proctor.llm.usage import chat_tokens, prompt_tokens, responses_tokens

__all__ = ["CHAT", "RESPONSES", "lost_errors"]


def lost_errors() -> tuple[type[BaseException], ...]:
    import openai

    return (openai.APIConnectionError,)  # APITimeoutError is one


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chat_prompt(request: dict[str, Any]) -> int:
    return prompt_tokens(request.get("messages"), request.get("tools"), request.get("functions"))


def _chat_max(request: dict[str, Any]) -> int | None:
    given = _number(request.get("max_completion_tokens"))
    return given if given is not None else _number(request.get("max_tokens"))


def _chat_tokens(response: Any) -> Tokens | None:
    usage = getattr(response, "usage", None)
    return chat_tokens(usage) if usage is not None else None


def _chat_stream_request(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    options = request.get("stream_options")
    given = dict(options) if isinstance(options, dict) else {}
    asked = given.get("include_usage") is True
    return {**request, "stream_options": {**given, "include_usage": True}}, asked


def _chat_stream_usage(chunk: Any, seen: Any) -> Any:
    usage = getattr(chunk, "usage", None)
    return usage if usage is not None else seen


def _chat_stream_tokens(seen: Any) -> Tokens | None:
    return chat_tokens(seen) if seen is not None else None


def _chat_usage_only(chunk: Any) -> bool:
    return getattr(chunk, "usage", None) is not None and not getattr(chunk, "choices", None)


CHAT = Api(
    tool="openai.chat.completions.create",
    prompt=_chat_prompt,
    max_output=_chat_max,
    tokens=_chat_tokens,
    stream_request=_chat_stream_request,
    stream_usage=_chat_stream_usage,
    stream_tokens=_chat_stream_tokens,
    usage_only=_chat_usage_only,
    lost=(),  # set by instrument(), once openai is imported
)


def _responses_prompt(request: dict[str, Any]) -> int:
    return prompt_tokens(request.get("input"), request.get("instructions"), request.get("tools"))


def _responses_max(request: dict[str, Any]) -> int | None:
    return _number(request.get("max_output_tokens"))


def _responses_tokens(response: Any) -> Tokens | None:
    usage = getattr(response, "usage", None)
    return responses_tokens(usage) if usage is not None else None


def _responses_stream_request(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    return request, True


_FINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))


def _responses_stream_usage(event: Any, seen: Any) -> Any:
    if getattr(event, "type", None) in _FINAL:
        usage = getattr(getattr(event, "response", None), "usage", None)
        if usage is not None:
            return usage
    return seen


def _responses_stream_tokens(seen: Any) -> Tokens | None:
    return responses_tokens(seen) if seen is not None else None


def _never(event: Any) -> bool:
    return False


RESPONSES = Api(
    tool="openai.responses.create",
    prompt=_responses_prompt,
    max_output=_responses_max,
    tokens=_responses_tokens,
    stream_request=_responses_stream_request,
    stream_usage=_responses_stream_usage,
    stream_tokens=_responses_stream_tokens,
    usage_only=_never,
    lost=(),
)
