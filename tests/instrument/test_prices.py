"""Prices: the rates read from genai-prices' bundled table price tokens as genai-prices itself does."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor import ConfigurationError
from proctor.llm.prices import PriceTable, Tokens

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4.1-mini"), ("anthropic", "claude-sonnet-4-5")]


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    plain=st.integers(0, 400_000),
    cache_read=st.integers(0, 100_000),
    cache_write=st.integers(0, 100_000),
    output=st.integers(0, 100_000),
)
def test_table_rates_price_as_genai_prices_does(
    model: tuple[str, str], plain: int, cache_read: int, cache_write: int, output: int
) -> None:
    provider, name = model
    if provider == "openai":
        cache_write = 0  # OpenAI reports no cache writes
    prompt = plain + cache_read + cache_write
    ours = (
        PriceTable(provider)
        .rates(name)
        .cost(Tokens(input=prompt, output=output, cache_read=cache_read, cache_write=cache_write))
    )
    usage = Usage(
        input_tokens=prompt,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    theirs = calc_price(usage, name, provider_id=provider).total_price
    assert ours == pytest.approx(float(theirs), rel=1e-12, abs=1e-12)


def test_given_prices_override_the_table_and_are_checked() -> None:
    table = PriceTable("openai", {"gpt-4o": {"input": 1.0, "output": 1.0}})
    assert table.rates("gpt-4o").cost(Tokens(input=1_000_000)) == 1.0
    with pytest.raises(ConfigurationError, match="needs 'output'"):
        PriceTable("openai", {"x": {"input": 1.0}})
    with pytest.raises(ConfigurationError, match="unknown keys"):
        PriceTable("openai", {"x": {"input": 1.0, "output": 1.0, "reasoning": 3}})
    with pytest.raises(ConfigurationError, match=">= 0"):
        PriceTable("openai", {"x": {"input": -1, "output": 1.0}})
    with pytest.raises(ConfigurationError, match="'claude-sonnet-4-5'"):
        PriceTable("openai").rates("claude-sonnet-4-5")  # another provider's model is not priced as OpenAI's
