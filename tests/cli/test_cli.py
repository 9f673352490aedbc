from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flopex.cli import app
from tests.conftest import FIXTURES

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_offers_table_for_the_readme_query() -> None:
    code, out = run(
        "catalog", "offers", "--accelerator", "H100-SXM", "--sort", "price-per-accelerator", "--limit", "10"
    )
    assert code == 0, out
    assert "10 offer(s), sorted by price-per-accelerator" in out
    assert "nebius" in out and "$/acc-h" in out


def test_offers_json_is_sorted_and_enriched() -> None:
    code, out = run("catalog", "offers", "--jurisdiction", "EU", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows and all("EU" in r["jurisdictions"] for r in rows)
    per_acc = [r["price_usd_per_accelerator_hour"] for r in rows]
    assert per_acc == sorted(per_acc)
    assert {"grid_gco2e_per_kwh", "pue", "source", "as_of"} <= set(rows[0])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("catalog", "offers", "--market", "spto"), "'spot'"),
        (("catalog", "offers", "--sort", "cheapest"), "price"),
        (("catalog", "offers", "--accelerator", "H10"), "'H100"),
        (("catalog", "offers", "--provider", "awz"), "'aws'"),
        (("catalog", "offers", "--jurisdiction", "EUR"), "'EU'"),
        (("catalog", "offers", "--explain", "aws/us-east-1/p5.48xlarge/on_dmand"), "on_demand"),
        (("hardware", "show", "mi300"), "MI300X"),
    ],
)
def test_bad_flags_get_a_clear_error_with_the_closest_value(args: tuple[str, ...], expected: str) -> None:
    code, out = run(*args)
    assert code == 2
    assert "error:" in out and expected in out and "Traceback" not in out


def test_hardware_list_and_show() -> None:
    code, out = run("hardware", "list")
    assert code == 0 and "GB200" in out and "TPU-V6E" in out
    code, out = run("hardware", "show", "h100", "--json")
    assert code == 0 and json.loads(out)["id"] == "H100-SXM"


def test_regions_show_dataset_and_fallback() -> None:
    code, out = run("catalog", "regions", "--provider", "runpod", "--json")
    assert code == 0
    by_region = {r["region"]: r for r in json.loads(out)}
    assert by_region["EU-RO-1"]["grid"]["basis"] == "world"
    assert by_region["US-TX-3"]["grid"]["basis"] == "country"


def test_validate_lists_every_problem_and_fails() -> None:
    code, out = run("catalog", "validate", str(FIXTURES / "overlays" / "bad-offers.csv"))
    assert code == 1
    for line in (3, 4, 5, 6, 7, 8, 9, 10):
        assert f"bad-offers.csv:{line}" in out
    assert "1 offer(s)" in out
    assert "bad-offers.csv:3 [accelerator]" in out and "'H100-SXM'" in out  # field shown, closest id suggested


def test_validate_reports_an_owned_server_it_cannot_price() -> None:
    code, out = run("catalog", "validate", str(FIXTURES / "overlays" / "negotiated.yaml"))
    assert code == 1  # the TPU server without server_power_kw
    assert "server_power_kw" in out


def test_import_writes_the_overlay_that_later_commands_read(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    env = {"FLOPEX_CONFIG_DIR": str(config)}
    src = tmp_path / "aws" / "vms.csv"
    src.parent.mkdir()
    shutil.copy(FIXTURES / "skypilot" / "aws" / "vms.csv", src)
    code, out = run("catalog", "import", "skypilot", str(src), "--verbose", env=env)
    assert code == 0, out
    assert "blank on-demand price" in out and "spot price above on-demand" in out
    assert (config / "catalog" / "skypilot-aws.csv").exists()
    code, out = run("catalog", "offers", "--region", "ap-east-2", "--json", env=env)
    assert code == 0, out
    rows = json.loads(out)
    assert [r["instance_type"] for r in rows] == ["p4de.24xlarge", "p4de.24xlarge"]
    assert rows[0]["grid_basis"] == "world"
    code, out = run("catalog", "offers", "--explain", "aws/us-east-1/p5.48xlarge/on_demand", env=env)
    assert code == 0 and "shipped" in out and "skypilot-aws.csv" in out


def test_overlay_from_environment_variable_overrides_shipped_price() -> None:
    env = {"FLOPEX_CATALOG": str(FIXTURES / "overlays" / "negotiated.yaml")}
    code, out = run(
        "catalog",
        "offers",
        "--provider",
        "aws",
        "--accelerator",
        "H100-SXM",
        "--market",
        "on_demand",
        "--json",
        env=env,
    )
    assert code == 0
    assert [r["price_usd_per_hour"] for r in json.loads(out)] == [30.0]


def test_module_entry_point() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flopex", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("flopex ")


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [("a: [1, 2\n", "broken.yaml", "not valid YAML at line 2"), (None, "folder", "no .csv, .yaml or .yml files")],
)
def test_unreadable_overlays_get_one_clear_line(tmp_path: Path, content: str | None, name: str, expected: str) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    code, out = run("catalog", "validate", str(path))
    assert code in (1, 2) and expected in out and "Traceback" not in out
