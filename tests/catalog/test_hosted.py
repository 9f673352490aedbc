from __future__ import annotations

import genai_prices

from flopex.catalog import Catalog

DESIGN_LLMS = {
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.3-70b",
    "llama-3.1-405b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen2.5-72b",
    "qwen3-235b-a22b",
    "deepseek-v3",
}


def test_hosted_offers_cover_the_named_providers(catalog: Catalog) -> None:
    assert [str(i) for i in catalog.issues] == []
    providers = {h.provider for h in catalog.hosted}
    assert {"groq", "cerebras", "sambanova", "together", "fireworks"} <= providers
    assert {h.model for h in catalog.hosted} <= DESIGN_LLMS


def test_prices_are_genai_prices_own(catalog: Catalog) -> None:
    for h in catalog.hosted:
        provider = h.price_source.rsplit(": ", 1)[1].split("/", 1)[0]
        out = genai_prices.calc_price(
            genai_prices.Usage(output_tokens=2_000_000), h.provider_model, provider_id=provider
        )
        assert float(out.total_price) == 2 * h.output_usd_per_mtok
        assert h.input_usd_per_mtok >= 0 and h.output_usd_per_mtok > 0


def test_published_speeds_carry_their_source(catalog: Catalog) -> None:
    with_speed = [h for h in catalog.hosted if h.output_tokens_per_s_per_user is not None]
    assert len(with_speed) >= 6
    assert all(h.speed_source and h.speed_as_of for h in with_speed)
    cerebras_8b = next(h for h in with_speed if h.id == "cerebras/llama-3.1-8b")
    assert cerebras_8b.output_tokens_per_s_per_user == 1800
