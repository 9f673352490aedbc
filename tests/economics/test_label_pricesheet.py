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
    assert label.label_schema_version == 1
    assert label.cost_usd == pytest.approx(row.usd_per_unit / 1000)  # per 1k output tokens
    assert label.tokens_in == pytest.approx(1000 * 1500 / 350)
    assert label.grade == ENERGY.grades["1k_output_tokens"].grade(label.co2e_g_operational or 0)
    assert Label.model_validate_json(label.model_dump_json()) == label
    text = render_text(label)
    assert text.startswith("flopex label v1 | per 1k output tokens | $") and f"grade {label.grade}" in text
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
    assert label.grade == "-" and label.energy_wh_facility is None
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
