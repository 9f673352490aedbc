"""Labels (JSON, text, SVG) and price sheets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import Label, label_for, load_energy_table, price_sheet, quote, render_svg, render_text
from flopex.errors import EconomicsError
from flopex.perf import load_efficiency
from flopex.workloads import ChatWorkload, load_workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _chat() -> ChatWorkload:
    w = load_workload(EXAMPLES / "enterprise-chat-70b.yaml")
    assert isinstance(w, ChatWorkload)
    return w


def test_a_label_renders_as_json_text_and_svg() -> None:
    w = _chat()
    row = next(r for r in quote(w, CATALOG, EFF, ENERGY).rows if r.footprint is not None)
    label = label_for(row, ENERGY, 1500 / 350)
    assert label.label_schema_version == 2 and label.includes_idle
    assert label.cost_usd == pytest.approx(row.usd_per_unit / 1000)  # per 1k output tokens
    assert label.prompt_tokens == pytest.approx(1000 * 1500 / 350) and label.completion_tokens == 1000
    assert label.grade == ENERGY.grades["1k_output_tokens"].grade(label.co2e_g_operational or 0)
    assert Label.model_validate_json(label.model_dump_json()) == label
    text = render_text(label)
    assert text.startswith("flopex label v2 | per 1k output tokens | $") and f"grade {label.grade}" in text
    svg = ET.fromstring(render_svg(label))
    assert svg.tag.endswith("svg")
    texts = [t.text for t in svg.iter() if t.tag.endswith("text")]
    assert label.grade in texts


def test_a_hosted_row_labels_its_energy_as_unknown() -> None:
    w = _chat().model_copy(
        update={"constraints": _chat().constraints.model_copy(update={"max_gco2e_per_1k_output_tokens": None})}
    )
    hosted = next(r for r in quote(w, CATALOG, EFF, ENERGY).rows if r.source == "hosted")
    label = label_for(hosted, ENERGY)
    assert label.grade == "-" and label.energy_wh_facility is None and label.co2e_g_operational is None
    assert label.energy_unknown == label.co2e_unknown == "the provider publishes no energy"
    assert "unknown" in render_text(label)
    ET.fromstring(render_svg(label))


def test_the_price_sheet_adds_the_margin_and_orders_latency_classes() -> None:
    sheet = price_sheet(_chat(), CATALOG, EFF, ENERGY, 0.25)
    assert len(sheet.rows) == 3 * 3 + 3
    for r in sheet.rows:
        if r.row is not None:
            cost = r.row.usd_per_mtok_output
            assert cost is not None and r.usd_per_mtok_output == pytest.approx(cost * 1.25)
    eight = {r.latency_class: r.usd_per_mtok_output for r in sheet.rows if r.tier == "context 8k"}
    batch, standard, interactive = eight["batch"], eight["standard"], eight["interactive"]
    assert batch is not None and standard is not None and interactive is not None
    assert batch <= standard <= interactive
    commits = [r.usd_per_mtok_output for r in sheet.rows if r.tier.startswith("commit")]
    assert commits[0] is not None and commits[-1] is not None and commits[0] >= commits[-1]
    assert "| tier | context |" in sheet.to_markdown()
    with pytest.raises(EconomicsError, match="margin"):
        price_sheet(_chat(), CATALOG, EFF, ENERGY, -0.1)


def test_version_1_labels_of_both_shapes_read_as_version_2() -> None:
    w = _chat()
    row = next(r for r in quote(w, CATALOG, EFF, ENERGY).rows if r.footprint is not None)
    v2 = label_for(row, ENERGY, 1500 / 350)
    v1 = v2.model_dump(mode="json", exclude={"prompt_tokens", "completion_tokens", "includes_idle", "energy_unknown",
                                             "co2e_unknown", "share_basis", "backend", "held_s", "backend_s",
                                             "tokens_counted_by"})  # fmt: skip
    v1.update(label_schema_version=1, tokens_in=v2.prompt_tokens, tokens_out=v2.completion_tokens)
    assert Label.model_validate(v1) == v2
    gateway_v1 = {
        "label_schema_version": 1, "backend": "h100", "hardware": "1 x H100-SXM (gpu)", "region": "nebius/eu",
        "cost_usd": 1e-6, "energy_wh": 2e-4, "co2e_g": 5e-5, "pue": 1.2, "grid_gco2e_per_kwh": 250.0,
        "prompt_tokens": 9, "completion_tokens": 12, "tokens_counted_by": "upstream usage", "basis": "on_demand",
    }  # fmt: skip
    old = Label.model_validate(gateway_v1)
    assert (old.unit, old.backend, old.cost_usd, old.energy_wh_facility, old.co2e_g_operational) == (
        "request", "h100", 1e-6, 2e-4, 5e-5,
    )  # fmt: skip
    assert old.hardware.description == "1 x H100-SXM (gpu)" and not old.includes_idle
    assert render_text(old).startswith("flopex label v2 | per request | $1e-06")
