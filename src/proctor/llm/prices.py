"""Prices: what a model's tokens cost, from genai-prices' bundled table or the caller's own.

Rates are US dollars per million tokens, as providers publish them. The table
is the one the ``genai-prices`` package ships (read from the installed package,
never fetched); a ``prices=`` mapping overrides it model by model. A model that
neither knows raises ``ConfigurationError`` naming it: a call is never priced
at zero by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from proctor.errors import ConfigurationError

__all__ = ["PriceTable", "Rate", "Rates", "Tokens"]

Rate = tuple[float, tuple[tuple[int, float], ...]]
"""A price per million tokens: the base rate, and ``(threshold, rate)`` tiers. A prompt of more
input tokens than a tier's threshold pays that tier's rate on all of a kind (the providers' "cliff")."""

_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens of one call, as a provider bills them.

    ``input`` counts every prompt token, cached or not; ``cache_read`` and
    ``cache_write`` (of which ``cache_write_1h`` were written for an hour) are
    the parts of it read from or written to the prompt cache. ``output``
    counts every generated token, of which ``reasoning`` were reasoning.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class Rates:
    """What one model charges, per million tokens of each kind (``None``: billed as plain input)."""

    model: str
    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    source: str = "prices="

    def cost(self, tokens: Tokens) -> float:
        """The price of ``tokens`` in dollars. Reasoning tokens are output tokens (billed at its rate)."""
        prompt = tokens.input
        cache_write = tokens.cache_write
        write_1h = min(tokens.cache_write_1h, cache_write)
        plain = max(prompt - tokens.cache_read - cache_write, 0)
        total = _at(self.input, prompt) * plain + _at(self.output, prompt) * tokens.output
        total += _at(self.cache_read or self.input, prompt) * tokens.cache_read
        total += _at(self.cache_write or self.input, prompt) * (cache_write - write_1h)
        total += _at(self.cache_write_1h or self.cache_write or self.input, prompt) * write_1h
        return total / 1_000_000


def _at(rate: Rate, prompt: int) -> float:
    """The rate per million tokens for a prompt of ``prompt`` input tokens."""
    base, tiers = rate
    for threshold, tiered in reversed(tiers):
        if prompt > threshold:
            return tiered
    return base


class PriceTable:
    """Prices by model name for one provider (``"openai"``, ``"anthropic"``), looked up once each.

    Parameters:
        provider: the genai-prices provider id the models are looked up under.
        overrides: ``{model: {"input": 2.5, "output": 10.0, "cache_read": 1.25, "cache_write": ...}}``
            in dollars per million tokens; ``input`` and ``output`` are required, a cache rate
            left out is billed as input.
    """

    def __init__(self, provider: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.provider = provider
        self._rates: dict[str, Rates] = {}
        self._lock = threading.Lock()
        for model, given in (overrides or {}).items():
            self._rates[model] = _given_rates(model, given)

    def rates(self, model: object) -> Rates:
        """The rates of ``model``; ``ConfigurationError`` naming it when no table knows it."""
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"a governed call needs a model name (a string), got {model!r}")
        rates = self._rates.get(model)
        if rates is None:
            rates = _table_rates(self.provider, model)
            with self._lock:
                rates = self._rates.setdefault(model, rates)
        return rates


def _given_rates(model: str, given: Mapping[str, float]) -> Rates:
    if not isinstance(given, Mapping):
        raise ConfigurationError(
            f"prices[{model!r}] must be a mapping such as {{'input': 2.5, 'output': 10.0}} "
            f"(dollars per million tokens), got {given!r}"
        )
    unknown = set(given) - set(_KEYS)
    if unknown:
        raise ConfigurationError(
            f"prices[{model!r}] has unknown keys {sorted(unknown)}; the keys are {', '.join(_KEYS)}"
        )
    for key in ("input", "output"):
        if key not in given:
            raise ConfigurationError(f"prices[{model!r}] needs {key!r} (dollars per million tokens)")
    rates: dict[str, Rate] = {}
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigurationError(f"prices[{model!r}][{key!r}] must be a number >= 0, got {value!r}")
        rates[key] = (float(value), ())
    return Rates(model, **rates, source="prices=")


_table_lock = threading.Lock()


def _table_rates(provider: str, model: str) -> Rates:
    """``model``'s rates today in genai-prices' bundled table (imported at the first lookup)."""
    try:
        from genai_prices import data_snapshot
    except ImportError as exc:
        raise ConfigurationError(
            f"no price for model {model!r}: the price table (genai-prices) is not installed; install "
            "proctor's 'openai' or 'anthropic' extra, or pass prices={model: {'input': ..., 'output': ...}}"
        ) from exc
    with _table_lock:  # the snapshot's lookup caches are plain dicts
        try:
            _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
        except LookupError:
            info = None
    if info is None:
        raise ConfigurationError(
            f"no price for model {model!r}: genai-prices has no {provider} model of that name; pass "
            f"prices={{{model!r}: {{'input': ..., 'output': ...}}}} to instrument() (dollars per "
            "million tokens)"
        )
    price = info.get_prices(datetime.now(tz=UTC))
    found: dict[str, Rate | None] = {
        "input": _rate(getattr(price, "input_mtok", None)),
        "output": _rate(getattr(price, "output_mtok", None)),
        "cache_read": _rate(getattr(price, "cache_read_mtok", None)),
        "cache_write": _rate(getattr(price, "cache_write_mtok", None)),
        "cache_write_1h": _rate(getattr(price, "cache_write_1h_mtok", None)),
    }
    input_rate, output_rate = found.pop("input"), found.pop("output")
    if input_rate is None or output_rate is None:
        raise ConfigurationError(
            f"no token price for model {model!r} in genai-prices (it prices it otherwise); pass "
            f"prices={{{model!r}: {{'input': ..., 'output': ...}}}} to instrument()"
        )
    return Rates(model, input_rate, output_rate, **found, source=f"genai-prices {info.id}")


def _rate(value: Any) -> Rate | None:
    """A genai-prices price (a ``Decimal`` or ``TieredPrices``) as a ``Rate``."""
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return (float(value), ())
    tiers = tuple((int(tier.start), float(tier.price)) for tier in value.tiers)
    return (float(value.base), tuple(sorted(tiers)))
