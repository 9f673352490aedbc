"""What `flopex calibrate probe` measured, which catalog accelerator it was, and the overlay it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from flopex.catalog import Accelerator, AcceleratorTable, Precision

__all__ = ["ProbeResult", "guess_accelerator", "probe_overlay"]


@dataclass(frozen=True)
class ProbeResult:
    device_name: str
    tflops: dict[Precision, float]  # achieved dense TFLOPS per precision
    memory_tb_s: float  # achieved device-memory bandwidth (read + write of a large copy)
    torch_version: str


def guess_accelerator(device_name: str, accelerators: AcceleratorTable) -> Accelerator | None:
    """The catalog accelerator a CUDA device name describes ('NVIDIA H100 80GB HBM3' -> H100-SXM), if clear."""
    name = device_name.upper().replace("NVIDIA", "").strip()
    rules = [
        ("H100", "PCIE", "H100-PCIE"),
        ("H100", "", "H100-SXM"),
        ("H200", "", "H200-SXM"),
        ("GB200", "", "GB200"),
        ("B200", "", "B200"),
        ("A100", "40GB", "A100-SXM-40GB"),
        ("A100", "", "A100-SXM-80GB"),
        ("L40S", "", "L40S"),
        ("A10G", "", "A10G"),
        ("L4", "", "L4"),
        ("MI300X", "", "MI300X"),
        ("MI325X", "", "MI325X"),
    ]
    for key, extra, acc_id in rules:
        if key in name and extra in name:
            return accelerators.find(acc_id)
    return None


def probe_overlay(result: ProbeResult, acc: Accelerator) -> dict[str, Any]:
    """An efficiency overlay recording the measured fractions of `acc`'s datasheet peaks."""
    fractions = {p: round(v / acc.tflops[p], 4) for p, v in result.tflops.items() if p in acc.tflops}
    return {
        "accelerators": {
            acc.id: {
                "peak_fraction": fractions,
                "memory_fraction": round(min(result.memory_tb_s / acc.memory_bandwidth_tb_s, 1.0), 4),
                "source": (
                    f"flopex calibrate probe on {result.device_name}, PyTorch {result.torch_version}, "
                    f"{date.today().isoformat()}: "
                    + ", ".join(f"{p} {v:,.0f} TFLOPS" for p, v in result.tflops.items())
                    + f", copy {result.memory_tb_s:.2f} TB/s"
                ),
            }
        }
    }
