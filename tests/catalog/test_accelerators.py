from __future__ import annotations

import pytest

from flopex.catalog import Catalog
from flopex.errors import UnknownAcceleratorError

DESIGN_IDS = (
    "A100-SXM-40GB A100-SXM-80GB A10G L4 L40S H100-SXM H100-PCIE H200-SXM B200 GB200 MI300X MI325X "
    "GAUDI2 GAUDI3 TPU-V5E TPU-V5P TPU-V6E TRAINIUM1 TRAINIUM2 INFERENTIA2"
).split()


def test_every_design_id_is_shipped(catalog: Catalog) -> None:
    assert sorted(catalog.accelerators) == sorted(DESIGN_IDS)


@pytest.mark.parametrize("acc_id", DESIGN_IDS)
def test_rows_are_sourced_and_physically_plausible(catalog: Catalog, acc_id: str) -> None:
    acc = catalog.accelerators[acc_id]
    assert acc.source.strip() and acc.as_of.year >= 2024
    assert "bf16" in acc.tflops or "fp16" in acc.tflops
    # narrower formats never run slower than 16-bit on the same matrix units
    for narrow in ("fp8", "int8", "fp4"):
        if narrow in acc.tflops:
            assert acc.tflops[narrow] >= acc.peak_tflops
    if acc.tdp_w is not None and acc.idle_w is not None:
        assert 0 <= acc.idle_w < acc.tdp_w
    if acc.kind == "gpu" and acc.memory_type == "GDDR":
        assert acc.scale_up_domain is None  # PCIe cards have no scale-up fabric


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("h100", "H100-SXM"),
        ("H100-SXM5", "H100-SXM"),
        ("a100-80gb", "A100-SXM-80GB"),
        ("trillium", "TPU-V6E"),
        ("tpu_v5e", "TPU-V5E"),
        ("Inf2", "INFERENTIA2"),
        ("mi300x", "MI300X"),
    ],
)
def test_aliases_resolve_case_insensitively(catalog: Catalog, name: str, expected: str) -> None:
    assert catalog.accelerators.resolve(name).id == expected


def test_unknown_id_names_the_closest(catalog: Catalog) -> None:
    with pytest.raises(UnknownAcceleratorError) as info:
        catalog.accelerators.resolve("H10")
    assert "H100" in str(info.value) and "To fix" in str(info.value)


def test_nvl72_and_hgx_domains(catalog: Catalog) -> None:
    assert catalog.accelerators["GB200"].scale_up_domain == 72
    assert catalog.accelerators["H100-SXM"].scale_up_domain == 8
    assert catalog.accelerators["H100-PCIE"].scale_up_domain is None
