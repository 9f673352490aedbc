from __future__ import annotations

from pathlib import Path

from flopex.catalog import load_catalog, read_overlay
from tests.conftest import FIXTURES

BAD = FIXTURES / "overlays" / "bad-offers.csv"


def _issues_by_line() -> dict[int, list[str]]:
    base = load_catalog()
    overlay = read_overlay(BAD, base.accelerators, base.regions)
    found: dict[int, list[str]] = {}
    for issue in overlay.issues:
        assert issue.file == str(BAD)
        found.setdefault(issue.line or 0, []).append(f"{issue.field}: {issue.message}")
    return found


def test_every_bad_row_is_reported_with_line_field_and_fix() -> None:
    found = _issues_by_line()
    assert any("accelerator" in m and "'H100" in m for m in found[3])  # closest valid id suggested
    assert any(m.startswith("price_usd_per_hour") and "greater than 0" in m for m in found[4])
    assert any(m.startswith("price_usd_per_hour: is missing") and "To fix" in m for m in found[5])
    assert any(m.startswith("vcpus") and "'abc'" in m for m in found[6])
    assert any(m.startswith("region") and "us-east-1" in m for m in found[7])
    assert any(m.startswith("market") and "'spot'" in m for m in found[8])
    assert any(m.startswith("provider") and "'aws'" in m for m in found[10])
    assert 2 not in found


def test_duplicate_ids_are_reported_and_good_rows_still_load(tmp_path: Path) -> None:
    catalog = load_catalog([BAD])
    good = catalog.offer("aws/us-east-1/good.instance/on_demand")
    assert good is not None and good.price_usd_per_hour == 40.0  # the first definition wins inside one file
    dup = [i for i in catalog.issues if i.field == "id"]
    assert len(dup) == 1 and dup[0].line == 9 and "line 2" in dup[0].message
    assert len(load_catalog().offers) + 1 == len(catalog.offers)  # nothing the user had is lost


def test_missing_column_is_named_with_the_closest_header() -> None:
    base = load_catalog()
    overlay = read_overlay(FIXTURES / "overlays" / "missing-column.csv", base.accelerators, base.regions)
    header = [i for i in overlay.issues if i.line == 1 and i.field == "price_usd_per_hour"]
    assert header and "'price'" in header[0].message
    assert overlay.offers == []


def test_later_layer_overrides_by_id_and_explain_keeps_history() -> None:
    catalog = load_catalog([FIXTURES / "overlays" / "negotiated.yaml"])
    offer = catalog.offer("aws/us-east-1/p5.48xlarge/on_demand")
    assert offer is not None and offer.price_usd_per_hour == 30.0
    history = catalog.history[offer.id]
    assert [h.offer.price_usd_per_hour for h in history] == [55.04, 30.0]
    assert history[0].layer == "shipped" and history[1].file.endswith("negotiated.yaml") and history[1].line == 2


def test_owned_servers_become_priced_offers_on_a_declared_site() -> None:
    catalog = load_catalog([FIXTURES / "overlays" / "negotiated.yaml"])
    owned = catalog.offer("owned/frankfurt-dc1/dc1-hgx-h100/owned")
    assert owned is not None and owned.market == "owned" and owned.capacity == 16
    assert owned.derivation is not None and "capital" in owned.derivation
    site = catalog.regions.resolve("owned", "frankfurt-dc1")
    assert site.pue == 1.3 and "EU" in catalog.regions.jurisdictions(site)
    assert catalog.regions.grid(site).basis == "country"
    # a TPU has no published TDP, so without server_power_kw the row is rejected with the fix
    tpu = [i for i in catalog.issues if "server_power_kw" in i.message]
    assert tpu and tpu[0].line is not None


def test_an_impossible_yaml_date_is_a_field_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "dates.yaml"
    path.write_text(
        "offers:\n"
        "  - {provider: lambda, region: us-east-1, instance_type: x, accelerator: H100, accelerator_count: 0,\n"
        "     market: on_demand, price_usd_per_hour: 3, source: me, as_of: 2026-13-01}\n"
    )
    base = load_catalog()
    overlay = read_overlay(path, base.accelerators, base.regions)
    fields = {i.field: i.message for i in overlay.issues}
    assert "'2026-13-01'" in fields["as_of"] and "YYYY-MM-DD" in fields["as_of"]
    assert "accelerator_count" in fields
    assert overlay.offers == []
