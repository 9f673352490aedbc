"""`flopex workload`, `quote`, `label` and `pricesheet` through the real CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from flopex.catalog import load_catalog
from tests.cli.test_cli import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHAT = str(EXAMPLES / "enterprise-chat-70b.yaml")


def test_workload_schema_and_validate() -> None:
    code, out = run("workload", "schema")
    assert code == 0
    assert json.loads(out)["title"] == "flopex workload"
    code, out = run("workload", "validate", str(EXAMPLES / "code-assistant.yaml"))
    assert code == 0 and "valid completion workload" in out and "2,048 in" in out


def test_quote_json_csv_and_table() -> None:
    code, out = run("quote", CHAT, "--json", "--top", "3")
    assert code == 0, out
    data = json.loads(out)
    assert len(data["rows"]) == 3 and data["crossover"]["requests_per_s"] > 0
    assert {"usd_per_unit", "usd_per_mtok_input", "slo_met", "wh_per_unit", "gco2e_per_unit", "label"} <= set(
        data["rows"][0]
    )
    code, out = run("quote", CHAT, "--csv", "--top", "2")
    assert code == 0 and out.splitlines()[0].startswith("source,offer,accelerator") and len(out.splitlines()) == 3
    code, out = run("quote", str(EXAMPLES / "video-service.yaml"), "--top", "3")
    assert code == 0 and "video-minute" in out


def test_label_from_a_workload_and_from_quote_json(tmp_path: Path) -> None:
    svg = tmp_path / "badge.svg"
    code, out = run("label", CHAT, "--format", "svg", "--output", str(svg))
    assert code == 0, out
    assert ET.parse(svg).getroot().tag.endswith("svg")
    code, quoted = run("quote", CHAT, "--json", "--top", "3")
    path = tmp_path / "q.json"
    path.write_text(quoted)
    second = json.loads(quoted)["rows"][1]["offer"]
    code, out = run("label", str(path), "--offer", second, "--format", "json")
    assert code == 0 and json.loads(out)["provider"] == second.split("/")[0]
    code, out = run("label", str(path), "--offer", "nope")
    assert code == 2 and "is not in" in out
    code, out = run("label", CHAT, "--format", "png")
    assert code == 2 and "Choose from: json, text, svg" in out


def test_pricesheet_markdown_and_errors() -> None:
    code, out = run("pricesheet", CHAT, "--margin", "0.25", "--markdown")
    assert code == 0, out
    assert out.startswith("# Price sheet: llama-3.3-70b") and "context 128k" in out
    code, out = run("pricesheet", str(EXAMPLES / "video-service.yaml"))
    assert code == 2 and "per token" in out


def test_a_bad_workload_is_rejected_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    head = "name: x\nkind: chat\nmodel: llama-3.1-8b\n"
    bad.write_text(head + "traffic:\n  request_per_s: 2\n  input_tokens: 1\n  output_tokens: 1\n")
    code, out = run("quote", str(bad))
    assert code == 2
    assert "bad.yaml:5: traffic.request_per_s: unknown field. Did you mean 'requests_per_s'" in out.replace("\n", "")
    assert "Traceback" not in out


def test_a_label_carries_the_regions_grid_where_the_accelerators_power_is_unknown() -> None:
    """The trial's finding: the video and training examples' best rows are TPUs, which publish no power, and
    their labels said "grid unknown" although the region's grid is in the catalog."""
    regions = load_catalog().regions
    for name in ("video-service.yaml", "fine-tune-8b.yaml"):
        code, out = run("label", str(EXAMPLES / name), "--format", "json")
        assert code == 0, out
        label = json.loads(out)
        grid = regions.grid(regions.resolve(label["provider"], label["region"]))
        assert label["grid_gco2e_per_kwh"] == grid.gco2e_per_kwh and label["ci_dataset"] == grid.dataset
        assert label["ci_basis"] == "location"
        if label["energy_wh_facility"] is None:  # power unknown: energy and carbon stay unknown, never 0
            assert label["co2e_g_operational"] is None and label["grade"] == "-"
        code, out = run("label", str(EXAMPLES / name), "--format", "svg")
        assert code == 0 and "grid unknown" not in out


def test_a_self_hosted_quote_carries_its_cost_interval_and_a_hosted_one_none() -> None:
    conv = str(EXAMPLES / "conv-assistant.yaml")
    code, out = run("quote", conv, "--json", "--top", "200")
    assert code == 0, out
    rows = json.loads(out)["rows"]
    offers = [r for r in rows if r["source"] == "offer"]
    assert offers and any(r["source"] == "hosted" for r in rows)
    for r in offers:
        band = r["usd_per_unit_interval"]
        assert band["low"] < r["usd_per_unit"] < band["high"] and "1/throughput" in band["basis"]
    assert all("usd_per_unit_interval" not in r for r in rows if r["source"] == "hosted")
    code, out = run("quote", conv, "--json", "--top", "200", "--confidence", "0.95")
    wide = {r["offer"]: r["usd_per_unit_interval"] for r in json.loads(out)["rows"] if r["source"] == "offer"}
    first = offers[0]
    assert wide[first["offer"]]["low"] < first["usd_per_unit_interval"]["low"]
