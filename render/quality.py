"""Cycles quality presets: every speed/quality knob of the renderer in one dict (no Blender import).

`published` reproduces the settings the published 3DIEBench generator got from BlenderProc: at most
100 samples per pixel with adaptive sampling (noise threshold 0.01), BlenderProc's light-bounce limits and
its default denoiser (Intel Open Image Denoise). The other presets trade noise for speed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from render import spec


@dataclass(frozen=True)
class Quality:
    """Cycles sampling settings of one preset.

    samples: maximum samples per pixel; adaptive_threshold: noise level at which a pixel stops sampling
    (0 disables adaptive sampling); denoise: run Open Image Denoise (CPU) or OptiX (NVIDIA GPU) on the result;
    the bounce limits cap the light path length per kind.
    """

    samples: int
    adaptive_threshold: float
    denoise: bool
    max_bounces: int = 3
    diffuse_bounces: int = 3
    glossy_bounces: int = 0
    transmission_bounces: int = 0
    transparent_max_bounces: int = 8

    def as_dict(self) -> dict:
        """Plain dict for manifest.json."""
        return asdict(self)


QUALITY_PRESETS: dict[str, Quality] = {
    "published": Quality(samples=spec.PUBLISHED_SAMPLES, adaptive_threshold=0.01, denoise=True),
    "default": Quality(samples=64, adaptive_threshold=0.02, denoise=True),
    "fast": Quality(samples=16, adaptive_threshold=0.05, denoise=True),
    "draft": Quality(samples=4, adaptive_threshold=0.0, denoise=False, max_bounces=2, diffuse_bounces=2),
}


def quality_preset(name: str) -> Quality:
    """The preset called `name`; a ValueError lists the known names otherwise."""
    try:
        return QUALITY_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown quality preset {name!r}; choose one of {', '.join(QUALITY_PRESETS)}"
        ) from None
