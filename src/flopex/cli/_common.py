"""What every command shares: consoles, the catalog loaded from the user's layers, error reporting."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import platformdirs
import typer
from rich.console import Console
from rich.markup import escape

from flopex.catalog import Catalog, load_catalog, overlay_files
from flopex.errors import FlopexError, did_you_mean
from flopex.perf import Efficiency, load_efficiency

__all__ = [
    "solver_quiet",
    "CatalogOption",
    "JsonOption",
    "CalibrationOption",
    "catalog_for",
    "efficiency_for",
    "user_efficiency_file",
    "choose",
    "err_console",
    "fail",
    "out_console",
    "print_json",
    "user_catalog_dir",
]


def out_console() -> Console:
    """A console on stdout, sized from the environment at the time of the call (never cached at import)."""
    return Console()


def err_console() -> Console:
    return Console(stderr=True)


CatalogOption = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="Extra catalog file or folder (CSV or YAML); repeatable. Applied last."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for programs instead of a table.")]
CalibrationOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--calibration", help="Extra efficiency overlay (YAML, as `flopex calibrate fit` writes); repeatable."
    ),
]


_S = TypeVar("_S", bound=str)


def _config_dir() -> Path:
    return Path(os.environ.get("FLOPEX_CONFIG_DIR") or platformdirs.user_config_dir("flopex"))


def data_dir() -> Path:
    """Where flopex keeps its own data (the ledger): $FLOPEX_DATA_DIR, else the XDG data folder."""
    return Path(os.environ.get("FLOPEX_DATA_DIR") or platformdirs.user_data_dir("flopex"))


def user_catalog_dir() -> Path:
    """The overlay folder: $FLOPEX_CONFIG_DIR/catalog, else the XDG config folder's flopex/catalog."""
    return _config_dir() / "catalog"


def user_efficiency_file() -> Path:
    """The efficiency overlay `flopex calibrate fit` writes and every prediction applies."""
    return _config_dir() / "perf" / "efficiency.yaml"


def efficiency_for(extra: Sequence[Path] | None) -> Efficiency:
    """Shipped efficiency factors, then the user's overlay, then --calibration files."""
    user = user_efficiency_file()
    try:
        return load_efficiency([*([user] if user.is_file() else []), *(extra or [])])
    except FlopexError as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def choose(value: str, options: Sequence[_S], flag: str) -> _S:
    """`value` if it is one of `options` (case-insensitive), else a clear error naming the closest."""
    for option in options:
        if option.lower() == value.lower():
            return option
    fail(f"{flag} {value!r} is not valid.{did_you_mean(value, options)} Choose from: {', '.join(options)}.")


def catalog_for(extra: Sequence[Path] | None, *, quiet: bool = False) -> Catalog:
    """Shipped data, then the user's overlay folder, then FLOPEX_CATALOG, then --catalog, reporting problems."""
    layers: list[tuple[Path, str]] = []
    folder = user_catalog_dir()
    if folder.is_dir():
        layers += [(p, "user folder") for p in overlay_files([folder])]
    env = os.environ.get("FLOPEX_CATALOG")
    if env:
        layers += [(p, "FLOPEX_CATALOG") for p in overlay_files([Path(p) for p in env.split(os.pathsep) if p])]
    layers += [(p, "--catalog") for p in overlay_files(list(extra or []))]
    try:
        catalog = load_catalog([p for p, _ in layers], layer_names=[name for _, name in layers])
    except FlopexError as exc:
        fail(str(exc))
    if catalog.issues and not quiet:
        errors = [i for i in catalog.issues if i.severity == "error"]
        for issue in catalog.issues[:5]:
            err_console().print(f"[yellow]catalog:[/] {escape(str(issue))}", highlight=False, soft_wrap=True)
        if len(catalog.issues) > 5:
            err_console().print(f"[yellow]catalog:[/] ... and {len(catalog.issues) - 5} more.", highlight=False)
        if errors:
            err_console().print(
                f"[yellow]{len(errors)} row(s) skipped; everything else loaded. "
                "See them all with `flopex catalog validate FILE`.[/]",
                highlight=False,
            )
    return catalog


def print_json(data: Any) -> None:
    out_console().print_json(json.dumps(data, default=str))


def _flush_c_stdout() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to reach (not POSIX): nothing buffered there
        pass


@contextmanager
def solver_quiet() -> Iterator[None]:
    """While the solver runs, file descriptor 1 points at the null device: HiGHS writes some lines with C
    printf, past Python's sys.stdout and whatever options say, and one such line would corrupt `--json`.
    C's own buffer is flushed before fd 1 comes back, so nothing it held leaks out at exit."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
