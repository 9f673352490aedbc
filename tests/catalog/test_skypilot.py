from __future__ import annotations

from datetime import date

import pytest

from flopex.catalog import Catalog, SkyPilotImport, import_skypilot
from flopex.errors import ImportFormatError
from tests.conftest import FIXTURES

SKY = FIXTURES / "skypilot"


def _import(catalog: Catalog, cloud: str) -> SkyPilotImport:
    return import_skypilot(SKY / cloud / "vms.csv", cloud, catalog.accelerators, catalog.regions, date(2026, 11, 26))


def _offer(result: SkyPilotImport, oid: str) -> float:
    return next(o.price_usd_per_hour for o in result.offers if o.id == oid)


def test_aws_columns_by_name_blank_prices_and_spot_above_on_demand(catalog: Catalog) -> None:
    result = _import(catalog, "aws")
    reasons = result.dropped_by_reason
    assert reasons["no accelerator (CPU-only instance)"] == 1
    assert reasons["blank on-demand price"] == 2  # p5e and trn2
    assert reasons["spot price above on-demand"] == 1  # g6e spot 2.10 > 1.861
    assert reasons["accelerator not modelled by flopex"] == 1  # Gaudi HL-205 (first-generation Gaudi)
    assert _offer(result, "aws/us-east-1/p5.48xlarge/on_demand") == 55.04
    # spot is kept per availability zone, on-demand once per region
    assert _offer(result, "aws/us-east-1/use1-az2/p5.48xlarge/spot") == 17.63
    assert _offer(result, "aws/us-east-1/use1-az4/p5.48xlarge/spot") == 25.75
    assert _offer(result, "aws/us-east-2/use2-az2/trn2.48xlarge/spot") == 23.06
    assert not any(o.market == "spot" and o.instance_type == "g6e.xlarge" for o in result.offers)
    # a region flopex does not know is declared, not dropped
    assert [r.region for r in result.regions] == ["ap-east-2"]


def test_gcp_gpu_rows_join_their_host_and_tpu_traps(catalog: Catalog) -> None:
    result = _import(catalog, "gcp")
    assert _offer(result, "gcp/us-central1/a3-highgpu-1g/on_demand") == pytest.approx(1.18251 + 4.20076)
    assert _offer(result, "gcp/us-central1/us-central1-a/a3-highgpu-1g/spot") == pytest.approx(0.36117 + 2.9926)
    reasons = result.dropped_by_reason
    assert reasons["spot price above on-demand"] == 1  # A100-80GB spot 1.964 > 1.8462 (+ the same host)
    assert reasons["GCP GPU-only price with no host VM row in its zone"] == 1  # L4 in europe-west4
    assert reasons["placeholder price 700.0 (not offered in this region)"] == 1
    assert reasons["accelerator not modelled by flopex"] == 1  # tpu-v4
    assert reasons["no accelerator (CPU-only instance)"] == 1
    v5p = next(o for o in result.offers if o.instance_type == "tpu-v5p-8" and o.market == "on_demand")
    assert v5p.accelerator == "TPU-V5P" and v5p.accelerator_count == 4  # v5p-8 names TensorCores
    v5e = next(o for o in result.offers if o.instance_type == "tpu-v5litepod-8" and o.market == "on_demand")
    assert v5e.accelerator_count == 8 and v5e.price_usd_per_hour == 9.60
    assert not any(o.region == "asia-south1" for o in result.offers)


def test_runpod_spot_repeating_price_and_memory_units(catalog: Catalog) -> None:
    result = _import(catalog, "runpod")
    assert result.dropped_by_reason["spot price repeats on-demand (no real spot market)"] == 2
    assert all(o.market == "on_demand" for o in result.offers)
    a100 = next(o for o in result.offers if o.instance_type == "1x_A100-80GB_SECURE")
    assert a100.accelerator == "A100-SXM-80GB"  # 80 'MiB' is 80 GB, not a 40 GB card
    assert result.notes["GPU memory labelled MiB but given in GB: read as GB"] == 2


def test_lambda_column_order_and_blank_price(catalog: Catalog) -> None:
    result = _import(catalog, "lambda")
    assert _offer(result, "lambda/us-east-1/gpu_8x_h100_sxm5/on_demand") == 31.92
    assert result.dropped_by_reason["blank on-demand price"] == 1


def test_a_file_that_is_not_a_skypilot_catalog_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ImportFormatError) as info:
        _import(catalog, "broken")
    assert "Price" in str(info.value) and "SpotPrice" in str(info.value)
