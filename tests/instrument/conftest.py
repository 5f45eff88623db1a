"""One local OpenAI/Anthropic stand-in for the module's tests, its requests forgotten between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.instrument.llm_server import LLMServer, Usage


@pytest.fixture(scope="session")
def _llm_server() -> Iterator[LLMServer]:
    server = LLMServer()
    yield server
    server.close()


@pytest.fixture
def llm_server(_llm_server: LLMServer) -> LLMServer:
    _llm_server.requests.clear()
    _llm_server.mode = "ok"
    _llm_server.usage = Usage()
    return _llm_server
