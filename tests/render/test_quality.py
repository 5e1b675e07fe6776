"""Quality presets: valid values, the two published baselines, clear errors (no Blender here)."""

from dataclasses import replace

import pytest

from render import spec
from render.quality import PUBLISHED, QUALITY_PRESETS, Quality, quality_preset, quality_problems


def test_every_preset_is_valid():
    assert {"published-raw", "published", "default", "fast", "draft"} <= set(QUALITY_PRESETS)
    for name, quality in QUALITY_PRESETS.items():
        assert quality_problems(quality) == [], name
        assert quality_preset(name) is quality


def test_published_presets_are_the_two_baselines():
    raw, published = quality_preset("published-raw"), quality_preset("published")
    assert (raw.samples, raw.adaptive_threshold, raw.denoise) == (spec.PUBLISHED_SAMPLES, 0.0, False)
    # BlenderProc's bproc.init() defaults: adaptive sampling 0.01, Intel denoiser, 3 bounces, no glossy
    assert published is PUBLISHED
    assert (published.samples, published.adaptive_threshold, published.denoise) == (100, 0.01, True)
    bounces = ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces")
    assert [getattr(published, b) for b in bounces] == [3, 3, 0, 0]
    assert replace(raw, adaptive_threshold=0.01, denoise=True) == published  # nothing else differs


def test_default_and_fast_denoise_with_few_samples():
    for name in ("default", "fast"):
        quality = quality_preset(name)
        assert quality.denoise and quality.samples < quality_preset("published-raw").samples / 4


def test_bad_values_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="samples must be at least 1"):
        Quality(samples=0, adaptive_threshold=0.0, denoise=False)
    with pytest.raises(ValueError, match="denoise_prefilter must be one of NONE, FAST, ACCURATE"):
        Quality(samples=4, adaptive_threshold=0.0, denoise=True, denoise_prefilter="SLOW")
    with pytest.raises(ValueError, match="adaptive_threshold"):
        Quality(samples=4, adaptive_threshold=-0.1, denoise=False)
    with pytest.raises(ValueError, match="adaptive_min_samples"):
        Quality(samples=4, adaptive_threshold=0.1, denoise=False, adaptive_min_samples=8)
    with pytest.raises(ValueError, match="unknown quality preset 'ultra'; choose one of published-raw"):
        quality_preset("ultra")
