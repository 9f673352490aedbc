"""Measure achievable GEMM TFLOPS and memory bandwidth on a local GPU with PyTorch (the `probe` extra)."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from flopex.catalog import Accelerator, AcceleratorTable, Precision
from flopex.errors import CalibrationError

__all__ = ["ProbeResult", "guess_accelerator", "probe_gpu", "probe_overlay"]


@dataclass(frozen=True)
class ProbeResult:
    device_name: str
    tflops: dict[Precision, float]  # achieved dense TFLOPS per precision
    memory_tb_s: float  # achieved device-memory bandwidth (read + write of a large copy)
    torch_version: str


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise CalibrationError(
            "PyTorch is not installed, so there is nothing to measure with. "
            "To fix: pip install 'flopex[probe]' on a machine with a GPU."
        ) from None


def _timed(torch: Any, fn: Any, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def probe_gpu(size: int = 8192, repeats: int = 20) -> ProbeResult:
    """Time square GEMMs (bf16, and fp8 where the GPU and PyTorch support it) and a large device copy."""
    torch = _torch()
    if not torch.cuda.is_available():
        raise CalibrationError(
            "no GPU is visible to PyTorch (torch.cuda.is_available() is False); flopex cannot probe. "
            "Run `flopex calibrate probe` on the machine with the accelerator."
        )
    dev = torch.device("cuda")
    a = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    flops = 2 * size**3
    tflops: dict[Precision, float] = {"bf16": flops / _timed(torch, lambda: a @ b, repeats) / 1e12}
    if hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm"):
        try:
            a8 = a.to(torch.float8_e4m3fn)
            b8 = b.to(torch.float8_e4m3fn).t().contiguous().t()
            one = torch.tensor(1.0, device=dev)
            t = _timed(
                torch, lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), repeats
            )
            tflops["fp8"] = flops / t / 1e12
        except (RuntimeError, TypeError):
            pass  # no FP8 matrix units (or no kernel for them in this PyTorch)
    n_bytes = 2 * 1024**3
    src = torch.empty(n_bytes // 2, device=dev, dtype=torch.float16)
    dst = torch.empty_like(src)
    seconds = _timed(torch, lambda: dst.copy_(src), repeats)
    name = str(torch.cuda.get_device_name(dev))
    return ProbeResult(name, tflops, 2 * n_bytes / seconds / 1e12, str(torch.__version__))


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
