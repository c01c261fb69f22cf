"""Judge prices as data: ``prices.yaml`` beside this module, read once (direct and batch, USD per Mtok)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

PRICES_FILE = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model, for direct calls and for the Batch API."""

    model: str
    input: float
    output: float
    batch_input: float
    batch_output: float
    source: str
    recorded: str

    def per_mtok(self, batch: bool = False) -> tuple[float, float]:
        """(input, output) USD per million tokens, at the batch or the direct price."""
        return (self.batch_input, self.batch_output) if batch else (self.input, self.output)


@lru_cache(maxsize=1)
def price_table() -> dict[str, Price]:
    """Every model in ``prices.yaml``."""
    data = yaml.safe_load(PRICES_FILE.read_text(encoding="utf-8"))
    out = {}
    for model, entry in data["models"].items():
        out[model] = Price(
            model=model,
            input=float(entry["direct"]["input"]),
            output=float(entry["direct"]["output"]),
            batch_input=float(entry["batch"]["input"]),
            batch_output=float(entry["batch"]["output"]),
            source=str(entry["source"]),
            recorded=str(data["recorded"]),
        )
    return out


def lookup(model: str) -> Price | None:
    """The listed price of ``model``, or None when the table does not know it."""
    return price_table().get(model)


def cost_usd(
    usage: dict,
    model: str,
    price_in: float | None = None,
    price_out: float | None = None,
    *,
    batch: bool = False,
) -> float | None:
    """USD for ``usage`` at explicit prices, else the listed (direct or batch) price; None if unknown.

    Explicit ``price_in``/``price_out`` are taken as given for either mode (the user knows their rate).
    """
    if price_in is None or price_out is None:
        listed = lookup(model)
        if listed is None:
            return None
        default_in, default_out = listed.per_mtok(batch)
        price_in = default_in if price_in is None else price_in
        price_out = default_out if price_out is None else price_out
    tokens_in = int(usage.get("prompt_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or 0)
    return (tokens_in * price_in + tokens_out * price_out) / 1e6
