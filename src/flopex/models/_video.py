"""`VideoModelSpec`: a diffusion-transformer (DiT) video generator, its token count and FLOPs per step.

The DiT denoises a latent video: the VAE compresses frames by `vae_temporal` in time and `vae_spatial` in
each spatial axis, the transformer cuts the latent into patches of `patch_t x patch_s x patch_s`, and each
patch is one token. Every denoising step runs the transformer once per guidance pass (two under
classifier-free guidance, one when guidance is distilled into the model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from flopex.errors import ModelConfigError, UnknownModelError, did_you_mean

__all__ = ["VideoModelSpec", "VideoPreset", "generic_video_model", "load_video_presets", "resolve_video_model"]


class VideoModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    architecture: str
    params_b: PositiveFloat = Field(description="transformer (DiT) parameters, billions, as the authors publish them")
    num_layers: PositiveInt = Field(description="transformer blocks that attend over the whole sequence")
    hidden_size: PositiveInt
    num_heads: PositiveInt
    vae_temporal: PositiveInt = 4
    vae_spatial: PositiveInt = 8
    patch_t: PositiveInt = 1
    patch_s: PositiveInt = 2
    text_tokens: NonNegativeInt = Field(description="prompt tokens the transformer reads")
    joint_text: bool = Field(description="text tokens join the attention sequence (MMDiT, full attention)")
    text_encoder_b: NonNegativeFloat = Field(description="text encoder parameters, billions (run once per video)")
    guidance_passes: Literal[1, 2] = Field(description="2 under classifier-free guidance, 1 when distilled")
    width: PositiveInt
    height: PositiveInt
    frames: PositiveInt
    steps: PositiveInt
    fps: PositiveFloat
    source: str = ""

    def latent_frames(self, frames: int) -> int:
        """A causal video VAE keeps the first frame and compresses the rest by `vae_temporal`."""
        return 1 + math.ceil((frames - 1) / self.vae_temporal)

    def video_tokens(self, width: int, height: int, frames: int) -> int:
        """Tokens of the latent video; a size that does not divide evenly is padded up, as the pipelines do."""
        cell = self.vae_spatial * self.patch_s
        t = math.ceil(self.latent_frames(frames) / self.patch_t)
        return t * math.ceil(height / cell) * math.ceil(width / cell)

    def sequence(self, width: int, height: int, frames: int) -> int:
        """Tokens in one attention sequence: the video tokens, plus the prompt when text joins the sequence."""
        return self.video_tokens(width, height, frames) + (self.text_tokens if self.joint_text else 0)

    def linear_flops(self, sequence: int) -> float:
        """Matrix multiplications of one transformer pass: 2 FLOPs per parameter per token."""
        return 2 * self.params_b * 1e9 * sequence

    def attention_flops(self, sequence: int) -> float:
        """Score and value products of one pass, 4·L·d·S² (quadratic in tokens), plus cross-attention to the
        prompt where text does not join the sequence."""
        full = 4 * self.num_layers * self.hidden_size * sequence**2
        cross = 0 if self.joint_text else 4 * self.num_layers * self.hidden_size * sequence * self.text_tokens
        return float(full + cross)

    def weight_bytes(self, bytes_per_param: float) -> float:
        return self.params_b * 1e9 * bytes_per_param


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    hf_repo: str
    as_of: date
    spec: dict[str, object]
    source: str = Field(min_length=1)


@dataclass(frozen=True)
class VideoPreset:
    spec: VideoModelSpec
    hf_repo: str
    as_of: date


@cache
def load_video_presets() -> dict[str, VideoPreset]:
    """Every shipped video-model preset by id, read once from flopex's `video_models.yaml`."""
    text = resources.files("flopex.data").joinpath("video_models.yaml").read_text(encoding="utf-8")
    presets: dict[str, VideoPreset] = {}
    for raw in yaml.safe_load(text)["models"]:
        row = _Row.model_validate(raw)
        spec = VideoModelSpec.model_validate({"id": row.id, "source": row.source, **row.spec})
        presets[row.id] = VideoPreset(spec, row.hf_repo, row.as_of)
    return presets


#: A generic DiT takes Wan2.1's proportions: about 13.4·d² parameters per block and d/128 blocks.
_PARAMS_PER_BLOCK_D2 = 14e9 / (40 * 5120**2)


def generic_video_model(
    params_b: float, num_layers: int | None = None, hidden_size: int | None = None
) -> VideoModelSpec:
    """A DiT of `params_b` billion parameters shaped like Wan2.1 (VAE 4x8x8, patches 1x2x2, classifier-free
    guidance, 512 cross-attended prompt tokens) where layers and width are not given."""
    if params_b <= 0:
        raise ModelConfigError(f"--params-b {params_b}: a generic video model needs a positive size in billions.")
    if hidden_size is None:
        layers_hint = num_layers
        if layers_hint is None:
            raw = (128 * params_b * 1e9 / _PARAMS_PER_BLOCK_D2) ** (1 / 3)
        else:
            raw = math.sqrt(params_b * 1e9 / (_PARAMS_PER_BLOCK_D2 * layers_hint))
        hidden_size = max(128, round(raw / 128) * 128)
    if num_layers is None:
        num_layers = max(1, round(params_b * 1e9 / (_PARAMS_PER_BLOCK_D2 * hidden_size**2)))
    return VideoModelSpec(
        id=f"generic-dit-{params_b:g}b",
        architecture="generic DiT",
        params_b=params_b,
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=max(1, hidden_size // 128),
        text_tokens=512,
        joint_text=False,
        text_encoder_b=5.7,
        guidance_passes=2,
        width=1280,
        height=720,
        frames=81,
        steps=50,
        fps=16,
        source="generic: Wan2.1-T2V-14B proportions (assumption)",
    )


def resolve_video_model(name: str) -> VideoModelSpec:
    """A shipped video-model preset id (case-insensitive)."""
    presets = load_video_presets()
    key = name.strip().lower()
    if key in presets:
        return presets[key].spec
    from flopex.models._presets import load_presets  # _presets imports this module

    if key in load_presets():
        raise UnknownModelError(
            f"{name!r} is a language model, not a video model. To fix: use `flopex predict llm --model {key}`, "
            f"or a video model id: {', '.join(presets)}."
        )
    raise UnknownModelError(
        f"unknown video model {name!r}.{did_you_mean(name, presets)} Known ids: {', '.join(presets)}. "
        "To fix: use one of these ids, or --model generic --params-b N for a DiT of N billion parameters."
    )
