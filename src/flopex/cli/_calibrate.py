"""`flopex calibrate`: check the performance model against measurements, fit it, probe a local GPU."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.cli._common import (
    CalibrationOption,
    JsonOption,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
    user_efficiency_file,
)
from flopex.cli._probe import probe_gpu
from flopex.errors import FlopexError
from flopex.perf import (
    Comparison,
    CrossValidation,
    Efficiency,
    bands_from,
    compare,
    cross_validate,
    fit,
    guess_accelerator,
    load_points,
    probe_overlay,
)

__all__ = ["calibrate_app", "comparison_table", "shipped_points_file"]

calibrate_app = typer.Typer(
    help="Compare the performance model with measurements, fit its efficiency factors, probe a GPU.",
    no_args_is_help=True,
)

PointsArg = Annotated[
    Path | None,
    typer.Argument(
        help="Measurements in the format of llm-serving.yaml or video-training.yaml (default: both shipped files)."
    ),
]


def shipped_points_file(name: str = "llm-serving.yaml") -> Path:
    return Path(str(resources.files("flopex.data").joinpath(f"calibration/{name}")))


def comparison_table(rows: list[Comparison], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    statuses = any(r.status != "fitted" for r in rows)
    columns = ("point", *(("status",) if statuses else ()), "figure", "measured", "predicted", "error", "layout")
    for col in columns:
        table.add_column(col, justify="right" if col in ("measured", "predicted", "error") else "left")
    for r in rows:
        style = "dim" if r.status == "uncertain" else ("red" if abs(r.error) > 0.15 else None)
        cells = [f"{r.measured:,.4g}", f"{r.predicted:,.4g}", f"{r.error:+.1%}", r.layout]
        table.add_row(r.point, *((r.status,) if statuses else ()), r.metric, *cells, style=style)
    errors = [abs(r.error) for r in rows]
    table.caption = (
        f"{len(rows)} figures: median |error| {statistics.median(errors):.1%}, max {max(errors):.1%}, "
        f"{sum(e <= 0.15 for e in errors)} within 15%"
    )
    return table


def _json_rows(rows: list[Comparison]) -> list[dict[str, object]]:
    return [
        {
            "point": r.point,
            "metric": r.metric,
            "measured": r.measured,
            "predicted": r.predicted,
            "error": r.error,
            "layout": r.layout,
            "role": r.role,
            "status": r.status,
            "source": r.source,
        }
        for r in rows
    ]


def _cross_validated(paths: list[Path], eff: Efficiency, json: bool, write_bands: Path | None = None) -> None:
    """`calibrate report --cross-validate`: per file, the rows, the summary by regime and the factors."""
    results: list[tuple[Path, CrossValidation]] = []
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console(),
                      transient=True) as progress:  # fmt: skip
            for path in paths:
                points = load_points(path)
                groups = len({pt.group for pt in points if pt.fitted})
                task = progress.add_task(f"cross-validating {path.name}", total=groups)
                step = _stepper(progress, task)
                results.append((path, cross_validate(points, eff, load_accelerators(), on_fold=step)))
    except FlopexError as exc:
        fail(str(exc))
    if write_bands is not None:
        write_bands.write_text(bands_from([cv for _, cv in results]).to_yaml(), encoding="utf-8")
        err_console().print(f"wrote the error bands to {write_bands}")
    if json:
        print_json([_cv_json(path, cv) for path, cv in results])
        return
    console = out_console()
    for path, cv in results:
        console.print(_cv_table(cv, f"{path.name}: in sample and held out ({cv.folds} publications left out in turn)"))
        console.print(_cv_summary(cv))
        console.print(_factors_table(cv))


def _stepper(progress: Progress, task: TaskID) -> Callable[[str], None]:
    return lambda _: progress.advance(task)


def _cv_table(cv: CrossValidation, title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for col in ("point", "figure", "status", "measured", "in sample", "error", "held out", "error "):
        table.add_column(col, justify="left" if col in ("point", "figure", "status") else "right")
    order = {"fitted": 0, "check": 1, "known miss": 2, "uncertain": 3}
    for v in sorted(cv.rows, key=lambda v: order[v.row.status]):
        r = v.row
        style = "dim" if r.status == "uncertain" else ("red" if abs(v.held_out_error) > 0.2 else None)
        table.add_row(r.point, r.metric, r.status, f"{r.measured:,.4g}", f"{r.predicted:,.4g}", f"{r.error:+.1%}",
                      f"{v.held_out:,.4g}", f"{v.held_out_error:+.1%}", style=style)  # fmt: skip
    return table


def _cv_summary(cv: CrossValidation) -> Table:
    """Median |error| by regime: fitted rows in sample and held out; checks; uncertain rows apart."""
    table = Table(title="median |error|", header_style="bold")
    for col in ("regime", "fitted: in sample", "fitted: held out", "checks", "uncertain (apart)"):
        table.add_column(col, justify="left" if col == "regime" else "right")

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.1%} ({len(values)})" if values else "-"

    for regime in dict.fromkeys(v.row.regime for v in cv.rows):
        rows = [v for v in cv.rows if v.row.regime == regime]
        fitted = [v for v in rows if v.row.status == "fitted"]
        table.add_row(
            regime, median([abs(v.row.error) for v in fitted]), median([abs(v.held_out_error) for v in fitted]),
            median([abs(v.row.error) for v in rows if v.row.status in ("check", "known miss")]),
            median([abs(v.row.error) for v in rows if v.row.status == "uncertain"]),
        )  # fmt: skip
    return table


def _factors_table(cv: CrossValidation) -> Table:
    table = Table(title="factors (in-sample fit)", header_style="bold")
    for col in ("factor", "prior", "fitted", "note"):
        table.add_column(col, justify="right" if col in ("prior", "fitted") else "left")
    for name, (start, end) in cv.fit.parameters.items():
        table.add_row(name, f"{start:.4g}", f"{end:.4g}", f"starts from {cv.fit.starts[name]}")
    for name, why in cv.fit.skipped.items():
        table.add_row(name, "", "", why)
    return table


def _cv_json(path: Path, cv: CrossValidation) -> dict[str, Any]:
    return {
        "file": str(path),
        "folds": cv.folds,
        "factors": {n: {"prior": a, "fitted": b} for n, (a, b) in cv.fit.parameters.items()},
        "not_fitted": cv.fit.skipped,
        "rows": [
            {**_json_rows([v.row])[0], "status": v.row.status, "regime": v.row.regime, "publication": v.row.group,
             "held_out": v.held_out, "held_out_error": v.held_out_error, "uncertain": v.row.uncertain,
             "known_miss": v.row.known_miss}
            for v in cv.rows
        ],
    }  # fmt: skip


def _write_overlay(target: Path, overlay: dict[str, Any], command: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# efficiency overlay written by `flopex calibrate {command}`\n"
    target.write_text(header + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")


@calibrate_app.command("report")
def report(
    file: PointsArg = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
    cross_validate_: Annotated[
        bool,
        typer.Option(
            "--cross-validate",
            help="Refit from the priors on every fitted point (in sample) and once per publication left out "
            "(held out), and show both errors side by side.",
        ),
    ] = False,
    write_bands: Annotated[
        Path | None,
        typer.Option(
            "--write-bands",
            help="With --cross-validate: write the out-of-sample error per regime, which predictions' intervals "
            "use, to this file (flopex ships data/calibration/error-bands.yaml).",
        ),
    ] = None,
) -> None:
    """Measured, predicted and error for every figure of every point."""
    paths = [file] if file else [shipped_points_file(), shipped_points_file("video-training.yaml")]
    eff = efficiency_for(calibration)
    if write_bands is not None and not cross_validate_:
        fail("--write-bands needs --cross-validate: the bands come from the held-out errors.")
    if write_bands is not None and not write_bands.parent.is_dir():
        fail(f"--write-bands {write_bands}: the folder {write_bands.parent} does not exist.")
    if cross_validate_:
        _cross_validated(paths, eff, json, write_bands)
        return
    tables: list[tuple[Path, list[Comparison]]] = []
    try:
        for path in paths:
            tables.append((path, compare(load_points(path), eff, load_accelerators())))
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json([row for _, rows in tables for row in _json_rows(rows)])
        return
    for path, rows in tables:
        out_console().print(comparison_table(rows, f"flopex against {path.name}"))


@calibrate_app.command("fit")
def fit_(
    file: Annotated[
        Path, typer.Argument(help="Measurements in the format of llm-serving.yaml or video-training.yaml.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Factor to fit, e.g. compute.peak_fraction.fp8 or video.attention_fraction (repeatable; "
            "default: chosen from the points).",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Where to write the overlay.")] = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Fit a few efficiency factors (least squares on log error) and write them as a user overlay."""
    target = output or user_efficiency_file()
    try:
        result = fit(
            load_points(file),
            efficiency_for(calibration),
            load_accelerators(),
            param,
            note=f"fitted by flopex calibrate fit on {file.name}",
        )
    except FlopexError as exc:
        fail(str(exc))
    _write_overlay(target, result.overlay, "fit")
    if json:
        print_json(
            {
                "parameters": {k: {"before": a, "after": b} for k, (a, b) in result.parameters.items()},
                "overlay": str(target),
                "not_fitted": result.skipped,
                "before": _json_rows(result.before),
                "after": _json_rows(result.after),
            }
        )
        return
    table = Table(title="Fitted factors", header_style="bold")
    for col in ("factor", "start (its prior)", "fitted"):
        table.add_column(col, justify="left" if col == "factor" else "right")
    for name, (a, b) in result.parameters.items():
        table.add_row(name, f"{a:.4g}", f"{b:.4g}")
    for name, why in result.skipped.items():
        table.add_row(name, "", "", style="dim")
        table.add_row(f"  not fitted: {why}", "", "", style="dim")
    console = out_console()
    console.print(table)
    console.print(comparison_table(result.after, "After the fit"))
    err_console().print(f"wrote {target}; every prediction now applies it (delete the file to undo).")


@calibrate_app.command("probe")
def probe(
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", help="Catalog id of the GPU (default: guessed).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Where to write the overlay.")] = None,
    json: JsonOption = False,
) -> None:
    """Measure GEMM TFLOPS (bf16, fp8 where supported) and memory bandwidth on this machine's GPU."""
    table = load_accelerators()
    try:
        result = probe_gpu()
    except FlopexError as exc:
        fail(str(exc))
    acc = table.find(accelerator) if accelerator else guess_accelerator(result.device_name, table)
    if acc is None:
        fail(
            f"cannot tell which catalog accelerator {result.device_name!r} is. To fix: pass --accelerator ID "
            "(see `flopex hardware list`)."
        )
    overlay = probe_overlay(result, acc)
    target = output or user_efficiency_file()
    _write_overlay(target, overlay, "probe")
    if json:
        print_json(
            {
                "device": result.device_name,
                "accelerator": acc.id,
                "tflops": result.tflops,
                "memory_tb_s": result.memory_tb_s,
                "overlay": str(target),
            }
        )
        return
    peaks = ", ".join(
        f"{p} {v:,.0f} of {acc.tflops[p]:,.0f} TFLOPS" for p, v in result.tflops.items() if p in acc.tflops
    )
    out_console().print(
        f"{result.device_name} ({acc.id}): {peaks}; memory {result.memory_tb_s:.2f} of "
        f"{acc.memory_bandwidth_tb_s:g} TB/s. Wrote {target}."
    )
