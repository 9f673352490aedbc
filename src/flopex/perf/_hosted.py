"""Token-priced hosted systems (Groq, Cerebras, SambaNova, ...): modelled from published per-user speeds.

Their weights live in on-chip SRAM across many chips, so the HBM roofline does not apply; what is public is
the output speed one stream gets, which is what a caller of the API sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flopex.catalog import HostedOffer
from flopex.errors import PerfError

__all__ = ["HostedPrediction", "predict_hosted"]


@dataclass(frozen=True)
class HostedPrediction:
    offer: HostedOffer
    input_tokens: int
    output_tokens: int

    @property
    def tokens_per_s_per_user(self) -> float:
        assert self.offer.output_tokens_per_s_per_user is not None
        return self.offer.output_tokens_per_s_per_user

    @property
    def tpot_s(self) -> float:
        return 1 / self.tokens_per_s_per_user

    @property
    def cost_usd_per_request(self) -> float:
        o = self.offer
        return (self.input_tokens * o.input_usd_per_mtok + self.output_tokens * o.output_usd_per_mtok) / 1e6

    def to_json(self) -> dict[str, Any]:
        o = self.offer
        return {
            "model": o.model,
            "hosted": o.provider,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s_per_user": self.tokens_per_s_per_user,
            "tpot_s": self.tpot_s,
            "ttft_s": None,
            "bound": "hosted",
            "usd_per_request": self.cost_usd_per_request,
            "speed_source": o.speed_source,
            "price_source": o.price_source,
        }


def predict_hosted(
    offers: Sequence[HostedOffer], provider: str, model: str, input_tokens: int, output_tokens: int
) -> HostedPrediction:
    """The hosted offer of `provider` for `model`, with the speed it publishes; a clear error otherwise."""
    mine = [o for o in offers if o.provider == provider.lower()]
    match = next((o for o in mine if o.model == model), None)
    if match is None:
        models = ", ".join(sorted({o.model for o in mine})) or "none"
        raise PerfError(
            f"{provider} has no hosted offer for {model}. It serves: {models} (see `flopex catalog hosted`)."
        )
    if match.output_tokens_per_s_per_user is None:
        raise PerfError(
            f"{provider} publishes no per-user speed for {model}, so flopex cannot predict it. To fix: add "
            "output_tokens_per_s_per_user with its source to a hosted overlay, or pick a provider that publishes one."
        )
    return HostedPrediction(match, input_tokens, output_tokens)
