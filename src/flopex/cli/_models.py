"""`flopex models`: the model architectures flopex knows, and any local config.json."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flopex.cli._common import JsonOption, fail, out_console, print_json
from flopex.errors import FlopexError
from flopex.models import ModelSpec, VideoModelSpec, load_presets, load_video_presets, resolve_model

__all__ = ["models_app"]

models_app = typer.Typer(
    help="Model architectures: shipped presets and Hugging Face config.json files.", no_args_is_help=True
)


def _b(n: int) -> str:
    return f"{n / 1e9:,.2f}B"


def _summary(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "architecture": spec.architecture,
        "total_params": spec.total_params,
        "active_params": spec.active_params,
        "layers": spec.num_layers,
        "hidden_size": spec.hidden_size,
        "attention": "MLA" if spec.mla else ("MHA" if spec.num_kv_heads == spec.num_heads else "GQA"),
        "heads": spec.num_heads,
        "kv_heads": spec.num_kv_heads,
        "kv_bytes_per_token_bf16": spec.kv_elements_per_token * 2,
        "experts": None if spec.moe is None else f"{spec.moe.experts_per_token} of {spec.moe.num_experts}",
        "max_context": spec.max_context,
        "source": spec.source,
    }


@models_app.command("list")
def list_(json: JsonOption = False) -> None:
    """Every preset: parameters (total and active), attention, KV cache per token, experts, context."""
    presets = load_presets()
    videos = load_video_presets()
    if json:
        llms = [{**_summary(p.spec), "kind": "llm", "published": p.published.model_dump()} for p in presets.values()]
        print_json(llms + [{**_video_summary(v.spec), "kind": "video"} for v in videos.values()])
        return
    table = Table(title="Model presets (parameters computed from the architecture)", header_style="bold")
    for col in ("id", "total", "active", "published", "layers", "attention", "KV/token bf16", "experts", "context"):
        table.add_column(col, justify="left" if col in ("id", "attention", "experts") else "right")
    for p in presets.values():
        s = _summary(p.spec)
        table.add_row(
            p.spec.id,
            _b(s["total_params"]),
            _b(s["active_params"]),
            f"{p.published.total_b:g}B" + (f" / {p.published.active_b:g}B" if p.published.active_b else ""),
            str(s["layers"]),
            f"{s['attention']} {s['heads']}/{s['kv_heads']}",
            f"{s['kv_bytes_per_token_bf16'] / 1024:,.0f} KiB",
            s["experts"] or "-",
            f"{s['max_context']:,}",
        )
    out_console().print(table)
    out_console().print(_video_table(list(videos.values())))


def _video_summary(spec: VideoModelSpec) -> dict[str, Any]:
    tokens = spec.video_tokens(spec.width, spec.height, spec.frames)
    return {**spec.model_dump(mode="json"), "default_video_tokens": tokens}


def _video_table(presets: list[Any]) -> Table:
    table = Table(title="Video model presets (diffusion transformers)", header_style="bold")
    for col in ("id", "params", "blocks x width", "VAE / patch", "guidance", "default output", "tokens"):
        table.add_column(col, justify="right" if col in ("params", "tokens") else "left")
    for p in presets:
        s: VideoModelSpec = p.spec
        table.add_row(
            s.id,
            f"{s.params_b:g}B",
            f"{s.num_layers} x {s.hidden_size}",
            f"{s.vae_temporal}x{s.vae_spatial}x{s.vae_spatial} / {s.patch_t}x{s.patch_s}x{s.patch_s}",
            "CFG (2 passes)" if s.guidance_passes == 2 else "distilled (1 pass)",
            f"{s.width}x{s.height}, {s.frames} frames at {s.fps:g} fps, {s.steps} steps",
            f"{s.video_tokens(s.width, s.height, s.frames):,}",
        )
    return table


@models_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="A preset id (llama-3.1-70b) or a path to a local config.json.")],
    json: JsonOption = False,
) -> None:
    """One model's architecture and the counts flopex derives from it."""
    video = load_video_presets().get(model.strip().lower())
    if video is not None:
        if json:
            print_json(_video_summary(video.spec))
        else:
            out_console().print(_video_table([video]))
        return
    try:
        spec = resolve_model(model)
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json({**_summary(spec), "spec": spec.model_dump(mode="json")})
        return
    table = Table(title=spec.id, show_header=False, title_style="bold")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _summary(spec).items():
        if key in ("total_params", "active_params"):
            value = f"{value:,} ({_b(value)})"
        elif key == "kv_bytes_per_token_bf16":
            value = f"{value:,} bytes ({value / 1024:,.1f} KiB)"
        table.add_row(key.replace("_", " "), "-" if value is None else str(value))
    if spec.mla is not None:
        table.add_row("MLA", f"kv_lora_rank {spec.mla.kv_lora_rank}, rope dim {spec.mla.qk_rope_head_dim}")
    out_console().print(table)
