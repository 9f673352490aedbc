"""Token-priced hosted systems (Groq, Cerebras, SambaNova, ...): modelled from published per-user speeds.

Their weights live in on-chip SRAM across many chips, so the HBM roofline does not apply; what is public is
the output speed one stream gets, which is what a caller of the API sees, and for some the time to first
token. Where a provider publishes no time to first token it stays unknown (None), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flopex.catalog import HostedOffer
from flopex.errors import PerfError
from flopex.workloads import TokenSlo

__all__ = ["HostedPrediction", "hosted_slo", "predict_hosted"]


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
    def ttft_s(self) -> float | None:
        """The published time to first token; None where none is published."""
        return self.offer.ttft_s

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
            "ttft_s": self.ttft_s,
            "bound": "hosted",
            "usd_per_request": self.cost_usd_per_request,
            "speed_source": o.speed_source,
            "ttft_source": o.ttft_source,
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


def hosted_slo(offer: HostedOffer, slo: TokenSlo, output_tokens: float) -> tuple[bool | None, str]:
    """Whether a hosted API meets a token SLO on requests of `output_tokens`, from what its provider publishes,
    and why: True, False, or None where a figure that a limit needs is not published. A first-token limit needs
    a published time to first token, a per-token limit a published per-user speed, an end-to-end limit both;
    what is not published is unknown, never taken as met. Published figures are medians or the source's p99
    (hosted.yaml says which); the limits are p99."""
    speed, ttft = offer.output_tokens_per_s_per_user, offer.ttft_s
    if slo.e2e_p99_s is not None:
        limit = f"{slo.e2e_p99_s:g} s"
        if ttft is None or speed is None:
            missing = " or ".join(n for n, v in (("time to first token", ttft), ("per-user speed", speed)) if v is None)
            return None, f"publishes no {missing}, so the {limit} end-to-end SLO cannot be shown to hold"
        e2e = ttft + max(output_tokens - 1, 0.0) / speed
        ok = e2e <= slo.e2e_p99_s
        at = f"at {output_tokens:,.0f} output tokens (published figures)"
        return ok, f"end to end {e2e:,.2f} s {'within' if ok else '>'} {limit} {at}"
    verdicts: list[tuple[bool | None, str]] = []
    if slo.ttft_p99_s is not None:
        limit = f"{slo.ttft_p99_s * 1e3:,.0f} ms"
        if ttft is None:
            verdicts.append(
                (None, f"publishes no time to first token, so the {limit} TTFT SLO cannot be shown to hold")
            )
        else:
            ok = ttft <= slo.ttft_p99_s
            verdicts.append((ok, f"published TTFT {ttft * 1e3:,.0f} ms {'within' if ok else '>'} {limit}"))
    if slo.tpot_p99_s is not None:
        limit = f"{slo.tpot_p99_s * 1e3:,.1f} ms"
        if speed is None:
            verdicts.append((None, f"publishes no per-user speed, so the {limit} TPOT SLO cannot be shown to hold"))
        else:
            ok = 1 / speed <= slo.tpot_p99_s
            text = f"TPOT {1e3 / speed:,.1f} ms at its published {speed:g} tokens/s {'within' if ok else '>'} {limit}"
            verdicts.append((ok, text))
    for wanted in (False, None):  # a limit known to be broken first, then one that cannot be checked
        found = next((text for ok, text in verdicts if ok is wanted), None)
        if found is not None:
            return wanted, found
    return True, "; ".join(text for _, text in verdicts) or "no latency SLO"
