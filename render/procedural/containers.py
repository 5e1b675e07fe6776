"""Container classes: bottle, mug.

Both are bodies of revolution, so each instance carries a large part on one side (a handle, a spray head
or a pump spout) that leaves at most a mirror plane: no rotation about the body's axis maps it to itself.
Object frame: Z up, standing on z = 0, the side part towards +Y; units: the body radius is 1.
"""

from __future__ import annotations

import numpy as np
import trimesh

from render.procedural import parts as p

BODY_SECTIONS = 20


def bottle(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Revolved body (round or flattened) whose shoulder and neck lean back, a cap, and on the front a jug
    handle, a spray head or a pump spout."""
    body_height = rng.uniform(2.2, 4.5)
    shoulder = rng.uniform(0.6, 1.4)
    neck_radius = rng.uniform(0.3, 0.5)
    neck_height = rng.uniform(0.4, 1.4)
    lean = rng.uniform(0.25, 0.55)
    profile = _bottle_profile(body_height, shoulder, neck_radius, neck_height)
    body = p.revolved(profile, [0, 0, 0], BODY_SECTIONS)
    body.vertices = _lean_and_flatten(body.vertices, body_height, shoulder, lean, rng.uniform(0.55, 1.0))
    parts = [body]
    top = body_height + shoulder + neck_height
    cap_height = rng.uniform(0.2, 0.5)
    parts.append(p.disc([0, -lean, top + cap_height / 2], neck_radius * 1.15, cap_height))
    top += cap_height

    style = str(rng.choice(["jug", "spray", "pump"]))
    if style == "jug":
        low = body_height * rng.uniform(0.35, 0.6)
        high = body_height + shoulder * 0.3
        reach = rng.uniform(0.6, 1.0)
        path = [[0, 0.7, high], [0, 1.0 + reach, high - 0.1], [0, 1.0 + reach, low + 0.1], [0, 0.9, low]]
        parts.append(p.tube(_rounded(np.array(path)), rng.uniform(0.15, 0.25)))
    elif style == "spray":
        head = rng.uniform(0.7, 1.1)
        reach = rng.uniform(1.2, 1.8)
        parts.append(p.box([0, reach / 2 - lean - 0.3, top + head / 2], [0.6, reach + 0.6, head]))
        parts.append(
            p.rod([0, reach - lean, top + head * 0.6], [0, reach - lean + 0.3, top + head * 0.6], 0.15)
        )
        parts.append(p.box([0, reach * 0.6 - lean, top - 0.4], [0.35, 0.2, 0.8], p.rotation("x", 0.3)))
    else:
        stem = rng.uniform(0.4, 0.9)
        reach = rng.uniform(1.2, 1.8)
        parts.append(p.disc([0, -lean, top + stem / 2], neck_radius * 0.5, stem, p.SMALL_ROUND_SECTIONS))
        parts.append(p.disc([0, -lean, top + stem + 0.15], neck_radius * 1.2, 0.3))
        spout = [
            [0, -lean, top + stem + 0.15],
            [0, reach - lean, top + stem + 0.15],
            [0, reach - lean + 0.2, top + stem - 0.15],
        ]
        parts.append(p.tube(np.array(spout), 0.14))
    return parts


def mug(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Open cup (revolved wall and bottom) with a C- or D-shaped handle on one side."""
    height = rng.uniform(1.4, 2.6)
    top_radius = rng.uniform(0.85, 1.2)
    wall = rng.uniform(0.05, 0.12)
    bottom = rng.uniform(0.08, 0.2)
    profile = [
        [0.0, 0.0],
        [0.95, 0.0],
        [1.0, 0.05],
        [top_radius, height],
        [top_radius - wall, height],
        [1.0 - wall, bottom],
        [0.0, bottom],
    ]
    parts = [p.revolved(profile, [0, 0, 0], BODY_SECTIONS)]
    span = height * rng.uniform(0.3, 0.42)
    middle = height * rng.uniform(0.45, 0.6)
    reach = rng.uniform(0.6, 0.95)
    squareness = rng.uniform(2.0, 5.0)
    angles = np.linspace(-np.pi / 2, np.pi / 2, 13)
    cos, sin = np.cos(angles), np.sin(angles)
    bulge = np.abs(cos) ** (2 / squareness)
    wall_radius = 1.0 + (top_radius - 1.0) * (middle + span * sin) / height
    path = np.column_stack(
        [
            np.zeros_like(angles),
            wall_radius - wall + reach * bulge,
            middle + span * np.sign(sin) * np.abs(sin) ** (2 / squareness),
        ]
    )
    parts.append(p.tube(path, rng.uniform(0.1, 0.18)))
    return parts


def _bottle_profile(body_height, shoulder, neck_radius, neck_height):
    """(n, 2) revolve profile (radius, height): base bevel, straight body, cosine shoulder, neck."""
    t = np.linspace(0.0, 1.0, 6)[1:]
    shoulder_radius = neck_radius + (1.0 - neck_radius) * (1 + np.cos(np.pi * t)) / 2
    shoulder_z = body_height + shoulder * t
    top = body_height + shoulder + neck_height
    return np.vstack(
        [
            [[0.0, 0.0], [0.9, 0.0], [1.0, 0.1], [1.0, body_height]],
            np.column_stack([shoulder_radius, shoulder_z]),
            [[neck_radius, top], [0.0, top]],
        ]
    )


def _lean_and_flatten(vertices, body_height, shoulder, lean, flatten):
    """Body vertices (n, 3) with the shoulder and neck moved back by `lean` (towards -Y) and the body below
    the neck squeezed along X to `flatten` of its width; both blend in smoothly over the shoulder."""
    blend = np.clip((vertices[:, 2] - body_height * 0.7) / (body_height * 0.3 + shoulder), 0.0, 1.0)
    blend = blend * blend * (3 - 2 * blend)
    moved = vertices.copy()
    moved[:, 1] -= lean * blend
    moved[:, 0] *= flatten + (1 - flatten) * blend
    return moved


def _rounded(path: np.ndarray, samples: int = 4) -> np.ndarray:
    """The polyline with each inner corner replaced by a short quadratic curve."""
    points = [path[0]]
    for before, corner, after in zip(path[:-2], path[1:-1], path[2:], strict=True):
        start, end = (corner + before) / 2, (corner + after) / 2
        for s in np.linspace(0.0, 1.0, samples):
            points.append((1 - s) ** 2 * start + 2 * (1 - s) * s * corner + s**2 * end)
    points.append(path[-1])
    return np.array(points)
