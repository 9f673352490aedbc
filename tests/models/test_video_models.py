"""Video-model presets and the token arithmetic of a latent video."""

from __future__ import annotations

import pytest

from flopex.errors import ModelConfigError, UnknownModelError
from flopex.models import generic_video_model, load_video_presets, resolve_model, resolve_video_model


def test_every_design_video_id_has_a_sourced_preset() -> None:
    presets = load_video_presets()
    assert set(presets) == {"wan2.1-t2v-14b", "hunyuanvideo", "cogvideox-5b", "open-sora-2.0"}
    for preset in presets.values():
        assert preset.spec.source, preset.spec.id
        assert preset.hf_repo.count("/") == 1


def test_wan_720p_tokens_match_the_published_derivation() -> None:
    # reference/performance.md section 4: S = 21 x 45 x 80 = 75,600 for 1280x720, 81 frames
    wan = resolve_video_model("wan2.1-t2v-14b")
    assert wan.latent_frames(81) == 21
    assert wan.video_tokens(1280, 720, 81) == 21 * 45 * 80
    # cross-attended prompt: the attention sequence is the video alone
    assert wan.sequence(1280, 720, 81) == 75_600


def test_joint_text_models_attend_over_the_prompt_too() -> None:
    cog = resolve_video_model("cogvideox-5b")
    # 49 frames -> 13 latent frames; 480/16 x 720/16 = 30 x 45 patches per frame
    assert cog.video_tokens(720, 480, 49) == 13 * 30 * 45
    assert cog.sequence(720, 480, 49) == 13 * 30 * 45 + 226


def test_sizes_that_do_not_divide_are_padded_up() -> None:
    wan = resolve_video_model("wan2.1-t2v-14b")
    # 1080 / 16 = 67.5 rows of patches: the pipeline pads to 68
    assert wan.video_tokens(1920, 1080, 1) == 68 * 120


def test_wan_step_flops_match_the_reference_derivation() -> None:
    wan = resolve_video_model("wan2.1-t2v-14b")
    s = 75_600
    per_video = 50 * 2 * (wan.linear_flops(s) + wan.attention_flops(s))
    assert per_video == pytest.approx(6.8e17, rel=0.02)  # reference: about 6.8e17 FLOPs, 69% attention
    assert wan.attention_flops(s) / (wan.linear_flops(s) + wan.attention_flops(s)) == pytest.approx(0.69, abs=0.02)


def test_generic_model_takes_wan_proportions() -> None:
    generic = generic_video_model(14)
    assert (generic.num_layers, generic.hidden_size) == (40, 5120)
    assert generic_video_model(14, num_layers=20).num_layers == 20
    with pytest.raises(ModelConfigError, match="positive"):
        generic_video_model(0)


def test_mixing_up_language_and_video_ids_says_which_command_to_use() -> None:
    with pytest.raises(UnknownModelError, match="predict video"):
        resolve_model("hunyuanvideo")
    with pytest.raises(UnknownModelError, match="predict llm"):
        resolve_video_model("llama-3.1-8b")
    with pytest.raises(UnknownModelError, match="'cogvideox-5b'"):
        resolve_video_model("cogvideox")
