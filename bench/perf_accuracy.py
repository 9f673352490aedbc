"""Accuracy of flopex's performance models against published measurements.

Prints measured, predicted and error for every figure of each calibration file (by default the copies of
llm-serving.yaml and video-training.yaml flopex ships), with the median and maximum absolute error and the
time it took; then the leave-one-publication-out cross-validation: median |error| by regime of the fitted rows
in sample and held out, of the checks, and of the uncertain rows apart.

    python bench/perf_accuracy.py [MEASUREMENTS.yaml ...]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

from flopex.catalog import load_accelerators
from flopex.cli._calibrate import _cv_summary, comparison_table, shipped_points_file
from flopex.perf import compare, cross_validate, load_efficiency, load_points


def main() -> None:
    paths = [Path(a) for a in sys.argv[1:]] or [shipped_points_file(), shipped_points_file("video-training.yaml")]
    console = Console(width=140)
    for path in paths:
        start = time.perf_counter()
        rows = compare(load_points(path), load_efficiency(), load_accelerators())
        elapsed = time.perf_counter() - start
        console.print(comparison_table(rows, f"flopex shipped defaults against {path.name}"))
        errors = [abs(r.error) for r in rows]
        console.print(
            f"median |error| {statistics.median(errors):.1%}, max {max(errors):.1%}, "
            f"{sum(e <= 0.15 for e in errors)}/{len(errors)} within 15%; {len(rows)} predictions in {elapsed:.2f} s"
        )
        start = time.perf_counter()
        cv = cross_validate(load_points(path), load_efficiency(), load_accelerators())
        console.print(_cv_summary(cv))
        console.print(f"{cv.folds} publications held out in turn, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
