"""Error bars: how far a prediction may be from what will be measured, from the model's own out-of-sample record.

The cross-validation of the calibration files (`flopex calibrate report --cross-validate`) gives, for every
figure, an error the fit did not see: held out for a fitted row (its publication left out of the fit), plain
for a check row (never fitted). Per regime (LLM throughput, TTFT, TPOT, video, training) flopex keeps the
root-mean-square of their log ratios, sigma, and the count of rows behind it; uncertain rows are left out.
A prediction's interval at confidence c is value x exp(+-t x sigma), t the two-sided Student-t quantile with as
many degrees of freedom as rows: with two rows a band is wide, as it should be.

The shipped `data/calibration/error-bands.yaml` is written by `flopex calibrate report --cross-validate
--write-bands`; a test keeps it equal to what the shipped files give now.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import yaml
from scipy.stats import t as student_t

from flopex.perf._calibrate import CrossValidation

__all__ = ["Band", "ErrorBands", "band_rows", "bands_from", "load_bands"]


@dataclass(frozen=True)
class Band:
    regime: str
    sigma: float  # RMS of log(measured / out-of-sample prediction)
    rows: int

    def interval(self, value: float, confidence: float) -> tuple[float, float]:
        """(low, high) around `value` at two-sided `confidence`."""
        k = float(student_t.ppf(0.5 + confidence / 2, df=self.rows)) * self.sigma
        return value * math.exp(-k), value * math.exp(k)

    def pessimistic(self, confidence: float) -> float:
        """The factor (>= 1) a figure may be off by, the wrong way, at one-sided `confidence`: a capacity
        planned at that confidence is divided by it, a latency multiplied."""
        return math.exp(max(float(student_t.ppf(confidence, df=self.rows)), 0.0) * self.sigma)

    def described(self, value: float, confidence: float) -> dict[str, float | str]:
        """`value`'s interval for a JSON answer: low, high and the basis."""
        low, high = self.interval(value, confidence)
        return {"low": low, "high": high, "basis": self.basis(confidence)}

    def basis(self, confidence: float) -> str:
        return (
            f"{confidence:.0%} interval from {self.rows} out-of-sample {self.regime} rows "
            f"(log error sigma {self.sigma:.2f}; flopex calibrate report --cross-validate)"
        )


@dataclass(frozen=True)
class ErrorBands:
    bands: dict[str, Band]
    generated: str

    def __getitem__(self, regime: str) -> Band | None:
        return self.bands.get(regime)

    def to_yaml(self) -> str:
        body = {
            "schema": 1,
            "generated": self.generated,
            "bands": {b.regime: {"sigma": round(b.sigma, 4), "rows": b.rows} for b in self.bands.values()},
        }
        header = (
            "# Out-of-sample error of the performance model per regime (see flopex/perf/_bands.py). Written by\n"
            "# `flopex calibrate report --cross-validate --write-bands`; tests keep it equal to the shipped files.\n"
        )
        return header + yaml.safe_dump(body, sort_keys=False)


def band_rows(results: Sequence[CrossValidation]) -> dict[str, list[float]]:
    """Log errors by regime of the figures the fits did not see (uncertain rows left out)."""
    rows: dict[str, list[float]] = {}
    for cv in results:
        for v in cv.rows:
            if v.row.status == "uncertain":
                continue
            rows.setdefault(v.row.regime, []).append(math.log(v.row.measured / v.held_out))
    return rows


def bands_from(results: Sequence[CrossValidation], generated: str | None = None) -> ErrorBands:
    bands = {
        regime: Band(regime, math.sqrt(sum(r * r for r in logs) / len(logs)), len(logs))
        for regime, logs in band_rows(results).items()
    }
    return ErrorBands(bands, generated or f"flopex calibrate report --cross-validate, {date.today().isoformat()}")


def load_bands(path: Path | None = None) -> ErrorBands:
    """The bands of a file written by `--write-bands`; the shipped ones (read once) without one."""
    if path is None:
        return _shipped()
    return _parse(path.read_text(encoding="utf-8"))


@functools.cache
def _shipped() -> ErrorBands:
    return _parse(resources.files("flopex.data").joinpath("calibration/error-bands.yaml").read_text(encoding="utf-8"))


def _parse(text: str) -> ErrorBands:
    data = yaml.safe_load(text)
    bands = {name: Band(name, float(b["sigma"]), int(b["rows"])) for name, b in data["bands"].items()}
    return ErrorBands(bands, str(data.get("generated", "")))
