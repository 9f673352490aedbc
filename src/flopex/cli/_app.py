"""The root `flopex` command and its groups."""

from __future__ import annotations

import typer

from flopex import __version__
from flopex.cli._calibrate import calibrate_app
from flopex.cli._catalog import catalog_app
from flopex.cli._economics import label, pricesheet, quote_command
from flopex.cli._hardware import hardware_app
from flopex.cli._ledger import budgets_app, keys_app, statement_command, usage_command
from flopex.cli._models import models_app
from flopex.cli._plan import plan_command
from flopex.cli._predict import predict_app
from flopex.cli._serve import emulate_command, serve_command
from flopex.cli._simulate import simulate_command
from flopex.cli._workload import workload_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="flopex",
    help="A broker for AI compute: quote, plan, simulate and route workloads across every offer you can buy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(hardware_app, name="hardware")
app.add_typer(catalog_app, name="catalog")
app.add_typer(models_app, name="models")
app.add_typer(predict_app, name="predict")
app.add_typer(calibrate_app, name="calibrate")
app.add_typer(workload_app, name="workload")
app.command("quote")(quote_command)
app.command("label")(label)
app.command("pricesheet")(pricesheet)
app.command("plan")(plan_command)
app.command("simulate")(simulate_command)
app.command("serve")(serve_command)
app.command("emulate")(emulate_command)
app.add_typer(keys_app, name="keys")
app.add_typer(budgets_app, name="budgets")
app.command("usage")(usage_command)
app.command("statement")(statement_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flopex {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """flopex: quote, plan, simulate and route AI compute."""


def main() -> None:
    app()
