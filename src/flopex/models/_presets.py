"""Shipped model presets and the one function that turns a model id or a config path into a `ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from flopex.errors import ModelConfigError, UnknownModelError, did_you_mean
from flopex.models._hf import read_hf_config, spec_from_hf_config
from flopex.models._spec import ModelSpec
from flopex.models._video import load_video_presets

__all__ = ["Preset", "Published", "load_presets", "resolve_model"]


class Published(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    total_b: PositiveFloat
    active_b: PositiveFloat | None = None
    source: str = Field(min_length=1)


class _PresetRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    hf_repo: str
    published: Published
    as_of: date
    config: dict[str, Any]


@dataclass(frozen=True)
class Preset:
    spec: ModelSpec
    hf_repo: str
    published: Published
    as_of: date


@cache
def load_presets() -> dict[str, Preset]:
    """Every shipped preset by id, read once from flopex's `models.yaml`."""
    text = resources.files("flopex.data").joinpath("models.yaml").read_text(encoding="utf-8")
    presets: dict[str, Preset] = {}
    for raw in yaml.safe_load(text)["models"]:
        row = _PresetRow.model_validate(raw)
        source = f"https://huggingface.co/{row.hf_repo}/blob/main/config.json"
        spec = spec_from_hf_config(row.config, row.id, where=f"models.yaml {row.id}", source=source)
        presets[row.id] = Preset(spec, row.hf_repo, row.published, row.as_of)
    return presets


def resolve_model(name: str) -> ModelSpec:
    """A preset id (case-insensitive) or a path to a local config.json or its folder."""
    presets = load_presets()
    key = name.strip().lower()
    if key in presets:
        return presets[key].spec
    if key in load_video_presets():
        raise UnknownModelError(
            f"{name!r} is a video model (a diffusion transformer), not a language model. To fix: use "
            f"`flopex predict video --model {key}`, or a language model id here (see `flopex models list`)."
        )
    path = Path(name).expanduser()
    if path.exists() or name.endswith(".json") or "/" in name:
        if not path.exists():
            raise ModelConfigError(f"{path}: no such file. Give a preset id or the path to a local config.json.")
        return read_hf_config(path)
    raise UnknownModelError(
        f"unknown model {name!r}.{did_you_mean(name, presets)} Known ids: {', '.join(presets)}. "
        "To fix: use one of these ids, or give the path to a Hugging Face config.json (see `flopex models list`)."
    )
