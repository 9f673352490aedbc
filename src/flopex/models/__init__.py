"""Model architectures: `ModelSpec` from a Hugging Face config.json or a shipped preset."""

from __future__ import annotations

from flopex.models._hf import SUPPORTED_MODEL_TYPES, read_hf_config, spec_from_hf_config
from flopex.models._presets import Preset, Published, load_presets, resolve_model
from flopex.models._spec import MLASpec, ModelSpec, MoESpec
from flopex.models._video import (
    VideoModelSpec,
    VideoPreset,
    generic_video_model,
    load_video_presets,
    resolve_video_model,
)

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "MLASpec",
    "ModelSpec",
    "MoESpec",
    "Preset",
    "Published",
    "load_presets",
    "read_hf_config",
    "resolve_model",
    "spec_from_hf_config",
    "VideoModelSpec",
    "VideoPreset",
    "generic_video_model",
    "load_video_presets",
    "resolve_video_model",
]
