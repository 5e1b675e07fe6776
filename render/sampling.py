"""The latent distribution of 3DIEBench, as pure NumPy (no Blender).

Every object draws its views' latents from its own generator, seeded by (dataset seed, synset, object id)
through a stable hash, so a view's latent never depends on object order, shards, workers or where a
resumed run restarts.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from render import spec

#: Rotation ranges: "published" draws each Euler angle from [-pi/2, pi/2]; "ood" (3DIEBench-OOD) from
#: [-pi, -pi/2] U [pi/2, pi].
ROTATION_RANGES = ("published", "ood")


def stable_hash(text: str) -> int:
    """A 64-bit integer from a SHA-256 of `text`: the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def object_seed(seed: int, synset: str, object_id: str) -> int:
    """The 64-bit seed of one object's generator, from (dataset seed, synset, object id)."""
    return stable_hash(f"{seed}/{synset}/{object_id}")


def object_rng(seed: int, synset: str, object_id: str) -> np.random.Generator:
    """The generator of every random draw made for one object."""
    return np.random.default_rng(object_seed(seed, synset, object_id))


def sample_latents(rng: np.random.Generator, views: int, rotation: str = "published") -> np.ndarray:
    """Draw `views` latents, shape (views, spec.LATENT_DIM) float64, laid out as `spec.LATENT_FIELDS`.

    Each value is uniform in its range (`spec.LATENT_LOW`, `spec.LATENT_HIGH`); with `rotation="ood"` the
    three Euler angles are uniform in [-pi, -pi/2] U [pi/2, pi] instead. Values appended to the published
    layout are drawn from a stream of their own (spawned from `rng`), so an appended factor changes no
    published value, and the first k views never depend on the view count.
    """
    if rotation not in ROTATION_RANGES:
        raise ValueError(f"rotation range must be one of {ROTATION_RANGES}, got {rotation!r}")
    published = slice(0, spec.PUBLISHED_LATENT_DIM)
    appended = slice(spec.PUBLISHED_LATENT_DIM, spec.LATENT_DIM)
    latents = np.concatenate(
        [uniform_values(rng, views, published), uniform_values(rng.spawn(1)[0], views, appended)], axis=1
    )
    if rotation == "ood":
        latents[:, spec.ROTATION] = fold_out_of_distribution(latents[:, spec.ROTATION])
    return latents


def uniform_values(rng: np.random.Generator, views: int, fields: slice) -> np.ndarray:
    """(views, n) float64: the latent values `fields` (n of them) of each view, uniform in their ranges."""
    low, high = spec.LATENT_LOW[fields], spec.LATENT_HIGH[fields]
    return rng.uniform(low, high, size=(views, len(low)))


def object_latents(
    seed: int, synset: str, object_id: str, views: int, rotation: str = "published"
) -> np.ndarray:
    """All view latents of one object, shape (views, spec.LATENT_DIM); the same for the same arguments."""
    return sample_latents(object_rng(seed, synset, object_id), views, rotation)


def fold_out_of_distribution(angles: np.ndarray) -> np.ndarray:
    """Map angles uniform in [-pi/2, pi/2] to angles uniform in [-pi, -pi/2] U [pi/2, pi] (radians).

    Negative angles move down by pi/2 and the others up by pi/2, which keeps the draw uniform.
    """
    return angles + np.where(angles < 0, -math.pi / 2, math.pi / 2)


def latent_bounds(rotation: str = "published") -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (low, high) bounds of each latent value, shape (spec.LATENT_DIM,) each, for a rotation range.

    For "ood" these are the hull [-pi, pi] of the Euler angles' range; `outside_range` also excludes the gap.
    """
    if rotation not in ROTATION_RANGES:
        raise ValueError(f"rotation range must be one of {ROTATION_RANGES}, got {rotation!r}")
    low, high = spec.LATENT_LOW.copy(), spec.LATENT_HIGH.copy()
    if rotation == "ood":
        low[spec.ROTATION], high[spec.ROTATION] = -math.pi, math.pi
    return low, high


def rotation_range_of(latents: np.ndarray) -> str | None:
    """The rotation range that latents (..., LATENT_DIM) of one object were drawn from, for a dataset without
    manifest.json (the official downloads): "ood" when every Euler angle lies outside [-pi/2, pi/2], as in
    3DIEBench-OOD, "published" when none does; None when they cannot tell (no angle, a non-finite one, or
    angles of both kinds: a damaged object, which the checks then report)."""
    angles = np.abs(np.asarray(latents, np.float64)[..., spec.ROTATION])
    if not angles.size or not np.isfinite(angles).all():
        return None
    outside = angles > math.pi / 2
    return "ood" if outside.all() else "published" if not outside.any() else None


def outside_range(latents: np.ndarray, rotation: str = "published", tolerance: float = 0.0) -> np.ndarray:
    """Boolean mask, shape of `latents` (..., LATENT_DIM): the values outside their sampling range for
    `rotation` by more than `tolerance`. With "ood" an Euler angle inside (-pi/2, pi/2) is outside its range
    too."""
    latents = np.asarray(latents)
    low, high = latent_bounds(rotation)
    outside = (latents < low - tolerance) | (latents > high + tolerance)
    if rotation == "ood":
        outside[..., spec.ROTATION] |= np.abs(latents[..., spec.ROTATION]) < math.pi / 2 - tolerance
    return outside


def range_text(rotation: str = "published") -> str:
    """The Euler angles' range of `rotation`, as the docs and messages write it."""
    return "[-pi, -pi/2] U [pi/2, pi]" if rotation == "ood" else "[-pi/2, pi/2]"
