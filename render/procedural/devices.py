"""Device classes: guitar, lamp, laptop.

Each builder draws every choice from the generator it is given and returns the parts of one instance in
the object frame (Z up, front towards +Y; units of about a metre). A guitar's cutaway, pegs and tilted
headstock, a lamp's offset arm and shade, and a laptop's hinged screen break every rotational symmetry.
"""

from __future__ import annotations

import numpy as np
import trimesh

from render.procedural import parts as p

#: Turns an outline drawn in a plate's (u, v) plane into the object's (x, z) plane, thickness along -Y.
_UPRIGHT = p.rotation("x", np.pi / 2)


def guitar(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Upright guitar: a two-bout body with one cutaway, a neck, a backward-tilted headstock with tuning
    pegs on one or both sides, a bridge and, on electric guitars, pickups and knobs."""
    electric = rng.random() < 0.4
    lower = rng.uniform(0.15, 0.2) * (0.85 if electric else 1.0)
    upper = lower * rng.uniform(0.7, 0.9)
    spacing = upper * rng.uniform(0.9, 1.3)
    thickness = rng.uniform(0.035, 0.05) if electric else rng.uniform(0.08, 0.12)
    centre = spacing * 0.45
    radii = _two_bout_outline(lower, upper, spacing, centre, 64)
    angles = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    cutaway_depth = rng.uniform(0.25, 0.5)
    radii *= 1 - cutaway_depth * np.exp(-(((angles - rng.uniform(0.6, 1.0)) / 0.3) ** 2))
    parts = [p.polar_prism(radii, thickness, p.rigid(_UPRIGHT, [0, 0, centre]))]

    front = thickness / 2
    neck_bottom = spacing + upper * 0.8
    neck_length = rng.uniform(0.38, 0.5)
    neck_width = rng.uniform(0.045, 0.06)
    neck_top = neck_bottom + neck_length
    parts.append(p.box([0, front - 0.01, (neck_bottom + neck_top) / 2], [neck_width, 0.03, neck_length]))
    parts.append(
        p.box([0, front + 0.008, (spacing + neck_top) / 2], [neck_width * 1.05, 0.008, neck_top - spacing])
    )

    head_length = rng.uniform(0.14, 0.2)
    head_width = rng.uniform(0.07, 0.09)
    head_tilt = rng.uniform(0.12, 0.3)
    head = [p.box([0, 0, head_length / 2], [head_width, 0.018, head_length])]
    inline = rng.random() < 0.5
    pegs = 6 if inline else 3
    for k in range(pegs):
        z = head_length * (0.25 + 0.65 * k / (pegs - 1))
        sides = (1.0,) if inline else (1.0, -1.0)
        head += [
            p.rod([s * head_width / 2, 0, z], [s * (head_width / 2 + 0.035), 0, z], 0.006, 8) for s in sides
        ]
    turn = p.rotation("x", head_tilt)
    parts += [piece.apply_transform(p.rigid(turn, [0, front - 0.015, neck_top])) for piece in head]

    bridge_z = -lower * rng.uniform(0.25, 0.45)
    parts.append(p.box([0, front + 0.006, bridge_z], [lower * 0.7, 0.012, 0.025]))
    if electric:
        for z in np.linspace(bridge_z + 0.05, spacing * 0.6, int(rng.integers(1, 4))):
            parts.append(p.box([0, front + 0.006, z], [neck_width * 1.3, 0.012, 0.025]))
        for k in range(int(rng.integers(1, 4))):
            knob = [lower * 0.55, front, -lower * 0.2 - 0.045 * k]
            parts.append(p.rod(knob, [knob[0], front + 0.02, knob[2]], 0.012, 8))
    return parts


def lamp(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Articulated desk lamp, arc floor lamp or tripod floor lamp; in every case the shade hangs off the
    stand towards +Y."""
    style = str(rng.choice(["desk", "arc", "tripod"]))
    if style == "desk":
        base_height = rng.uniform(0.02, 0.04)
        parts = [p.disc([0, 0, base_height / 2], rng.uniform(0.08, 0.12), base_height)]
        shoulder = np.array([0, -0.03, base_height])
        lean = rng.uniform(0.1, 0.5)
        elbow = shoulder + rng.uniform(0.3, 0.45) * np.array([0, np.sin(lean), np.cos(lean)])
        reach = rng.uniform(1.0, 2.0)
        wrist = elbow + rng.uniform(0.25, 0.4) * np.array([0, np.sin(reach), np.cos(reach)])
        parts += [p.rod(shoulder, elbow, 0.01), p.rod(elbow, wrist, 0.01), p.disc(elbow, 0.02, 0.03, 8)]
        aim = np.array([0, rng.uniform(0.2, 0.8), -1.0])
        parts.append(
            _shade(wrist, aim, rng.uniform(0.02, 0.04), rng.uniform(0.06, 0.1), rng.uniform(0.1, 0.16))
        )
        return parts
    if style == "arc":
        base = rng.uniform(0.14, 0.2)
        parts = [p.disc([0, 0, 0.025], base, 0.05)]
        height = rng.uniform(1.2, 1.6)
        reach = rng.uniform(0.6, 1.0)
        drop = rng.uniform(0.1, 0.4)
        bend = p.arc([0, reach, height - drop - reach], reach, np.pi, np.pi / 2, 9, plane="yz")
        bend[:, 2] = height - drop + (bend[:, 2] - (height - drop - reach)) * (drop + 0.3) / reach - 0.3
        path = np.vstack([[[0, 0, 0.05]], bend])
        parts.append(p.tube(path, 0.012))
        parts.append(
            _shade(path[-1], np.array([0, 0, -1.0]), 0.03, rng.uniform(0.12, 0.2), rng.uniform(0.12, 0.2))
        )
        return parts
    hub = rng.uniform(0.9, 1.3)
    spread = rng.uniform(0.25, 0.4)
    parts = []
    for k in range(3):
        angle = -np.pi / 2 + 2 * np.pi * k / 3
        parts.append(p.rod([0, 0, hub], [spread * np.cos(angle), spread * np.sin(angle), 0], 0.012))
    tilt = rng.uniform(0.4, 0.9)
    arm_end = np.array([0, rng.uniform(0.08, 0.15), hub + rng.uniform(0.08, 0.15)])
    parts.append(p.rod([0, 0, hub], arm_end, 0.012))
    aim = np.array([0, np.sin(tilt), np.cos(tilt)])
    parts.append(_shade(arm_end, aim, rng.uniform(0.15, 0.22), rng.uniform(0.2, 0.28), rng.uniform(0.2, 0.3)))
    return parts


def laptop(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Wedge-shaped base with keyboard and trackpad, a hinge along its back edge and a screen, shorter
    than the base, opened by 90-130 degrees."""
    width = rng.uniform(0.3, 0.4)
    depth = width * rng.uniform(0.62, 0.75)
    base = rng.uniform(0.018, 0.03)
    front = base * rng.uniform(0.45, 0.7)
    wedge = [[x, y, z] for x in (-width / 2, width / 2) for y in (-depth / 2, depth / 2) for z in (0.0, base)]
    wedge = np.array(wedge)
    wedge[(wedge[:, 1] > 0) & (wedge[:, 2] > 0), 2] = front
    parts = [p.hull(wedge)]
    slope = (base - front) / depth
    parts.append(
        p.box([0, -depth * 0.1, base + slope * depth * 0.1 - 0.001], [width * 0.85, depth * 0.4, 0.004])
    )
    trackpad = p.box([0, 0, 0], [width * rng.uniform(0.25, 0.4), depth * 0.25, 0.004])
    parts.append(
        trackpad.apply_transform(
            p.rigid(p.rotation("x", -slope), [0, depth * 0.3, front + 0.2 * (base - front)])
        )
    )
    parts.append(
        p.rod([-width * 0.42, -depth / 2, base * 0.8], [width * 0.42, -depth / 2, base * 0.8], base * 0.6, 10)
    )
    lid = rng.uniform(0.004, 0.008)
    screen_height = depth * rng.uniform(0.6, 0.75)
    screen = [
        p.box([0, lid / 2, screen_height / 2], [width, lid, screen_height]),
        p.box([0, lid + 0.001, screen_height * 0.52], [width * 0.92, 0.002, screen_height * 0.85]),
    ]
    hinge = p.rigid(p.rotation("x", rng.uniform(0.0, 0.7)), [0, -depth / 2, base])
    parts += [piece.apply_transform(hinge) for piece in screen]
    return parts


def _two_bout_outline(lower, upper, spacing, centre, count):
    """(count,) distances from (0, centre) to the outline of the union of two discs, of radii `lower` at
    height 0 and `upper` at `spacing`, along equally spaced directions of the (x, z) plane."""
    angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    directions = np.column_stack([np.cos(angles), np.sin(angles)])
    distances = np.zeros(count)
    for height, radius in ((0.0, lower), (spacing, upper)):
        offset = np.array([0.0, height - centre])
        along = directions @ offset
        across = np.sum(offset**2) - along**2
        reach = along + np.sqrt(np.clip(radius**2 - across, 0.0, None))
        distances = np.maximum(distances, reach)
    return distances


def _shade(apex, direction, narrow, wide, length):
    """Lamp shade: a frustum whose narrow end sits at `apex` and that opens along `direction`."""
    shade = p.frustum([0, 0, 0], narrow, wide, length)
    direction = np.asarray(direction, dtype=float)
    shade.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], direction / np.linalg.norm(direction)))
    shade.apply_translation(apex)
    return shade
