"""Cycles quality presets: every speed/quality knob of the renderer in one dict (no Blender import).

`published-raw` is the reference point of speed claims: 100 samples per pixel, no adaptive sampling, no
denoiser. `published` reproduces what the published 3DIEBench generator actually got from BlenderProc's
`bproc.init()` defaults: at most 100 samples with adaptive sampling (noise threshold 0.01), BlenderProc's
light-bounce limits and its default denoiser (Intel Open Image Denoise, guiding passes prefiltered).
`default` renders the same scene at least ten times faster than `published-raw` at no lower PSNR against
a 1024-sample reference (benchmarks/render_speed.py, figures in BENCHMARKS.md); `fast` is for small
images on CPU laptops; `draft` for smoke tests. docs/rendering.md explains each knob.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from render import spec

DENOISE_PREFILTERS = ("NONE", "FAST", "ACCURATE")
DENOISE_QUALITIES = ("HIGH", "BALANCED", "FAST")
DENOISE_PASSES = ("RGB", "RGB_ALBEDO", "RGB_ALBEDO_NORMAL")
SAMPLING_PATTERNS = ("TABULATED_SOBOL", "BLUE_NOISE")


@dataclass(frozen=True)
class Quality:
    """Cycles sampling settings of one preset.

    samples: maximum samples per pixel; adaptive_threshold: noise level at which a pixel stops sampling
    (0 disables adaptive sampling) after at least adaptive_min_samples (0: Cycles' automatic minimum);
    denoise: run Open Image Denoise on the result (on the GPU when rendering on one), fed with denoise_passes,
    guiding passes cleaned by denoise_prefilter, network denoise_quality; sampling_pattern: Cycles'
    sample sequence; light_tree: Cycles' light tree (False samples the lights by power); the bounce limits
    cap the light path length per kind; caustics: glossy/refractive light paths after a diffuse bounce.
    """

    samples: int
    adaptive_threshold: float
    denoise: bool
    denoise_prefilter: str = "ACCURATE"
    denoise_quality: str = "HIGH"
    denoise_passes: str = "RGB_ALBEDO_NORMAL"
    adaptive_min_samples: int = 0
    sampling_pattern: str = "TABULATED_SOBOL"
    light_tree: bool = True
    max_bounces: int = 3
    diffuse_bounces: int = 3
    glossy_bounces: int = 0
    transmission_bounces: int = 0
    transparent_max_bounces: int = 8
    caustics: bool = True

    def __post_init__(self) -> None:
        problems = quality_problems(self)
        if problems:
            raise ValueError(f"invalid quality settings: {'; '.join(problems)}")

    def as_dict(self) -> dict:
        """Plain dict for manifest.json."""
        return asdict(self)


def quality_problems(quality: Quality) -> list[str]:
    """What is wrong with `quality` (empty when Cycles accepts every value)."""
    problems = []
    if quality.samples < 1:
        problems.append(f"samples must be at least 1, got {quality.samples}")
    if not 0.0 <= quality.adaptive_threshold < 1.0:
        problems.append(f"adaptive_threshold must be in [0, 1), got {quality.adaptive_threshold}")
    if not 0 <= quality.adaptive_min_samples <= quality.samples:
        problems.append(f"adaptive_min_samples must be in [0, samples], got {quality.adaptive_min_samples}")
    choices = (
        ("denoise_prefilter", DENOISE_PREFILTERS),
        ("denoise_quality", DENOISE_QUALITIES),
        ("denoise_passes", DENOISE_PASSES),
        ("sampling_pattern", SAMPLING_PATTERNS),
    )
    for name, allowed in choices:
        if getattr(quality, name) not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}, got {getattr(quality, name)!r}")
    bounces = ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces")
    for name in (*bounces, "transparent_max_bounces"):
        if not 0 <= getattr(quality, name) <= 1024:
            problems.append(f"{name} must be in [0, 1024], got {getattr(quality, name)}")
    return problems


PUBLISHED = Quality(samples=spec.PUBLISHED_SAMPLES, adaptive_threshold=0.01, denoise=True)
DEFAULT = Quality(
    samples=8,
    adaptive_threshold=0.0,
    denoise=True,
    denoise_prefilter="FAST",
    sampling_pattern="BLUE_NOISE",
    light_tree=False,
    caustics=False,
)

QUALITY_PRESETS: dict[str, Quality] = {
    "published-raw": Quality(samples=spec.PUBLISHED_SAMPLES, adaptive_threshold=0.0, denoise=False),
    "published": PUBLISHED,
    "default": DEFAULT,
    # the default with half the samples and the cheapest denoising: no prefilter, the fast network
    "fast": replace(DEFAULT, samples=4, denoise_prefilter="NONE", denoise_quality="FAST"),
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
