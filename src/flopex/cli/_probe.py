"""Measure achievable GEMM TFLOPS and memory bandwidth on this machine's GPU with PyTorch (the `probe` extra).

This is I/O on a device, so it lives at the edge; `flopex.perf` turns the result into an efficiency overlay.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from flopex.catalog import Precision
from flopex.errors import CalibrationError
from flopex.perf import ProbeResult

__all__ = ["probe_gpu"]


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
