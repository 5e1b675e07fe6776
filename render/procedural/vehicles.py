"""Vehicle classes: airplane, car, watercraft.

Each builder draws every choice from the generator it is given and returns the parts of one instance in
the object frame (Z up, nose/bow towards +Y, mirror plane x = 0). The vertical fin, the cabin placement and
the superstructure break every rotational symmetry; only the left-right mirror remains.
"""

from __future__ import annotations

import numpy as np
import trimesh

from render.procedural import parts as p


def airplane(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Fuselage, swept wings, tail plane, vertical fin and 0-2 engines per wing; fuselage length 1."""
    length = 1.0
    radius = rng.uniform(0.035, 0.065)
    nose = rng.uniform(0.08, 0.2)
    tail = rng.uniform(0.2, 0.35)
    upsweep = rng.uniform(0.3, 1.0) * radius
    fuselage = p.tube(*_fuselage_path(length, radius, nose, tail, upsweep), sections=p.ROUND_SECTIONS)

    span = rng.uniform(0.35, 0.6) * length
    chord = rng.uniform(0.14, 0.24) * length
    wing_y = rng.uniform(-0.08, 0.1) * length
    wing_z = rng.choice([-0.6, 0.0, 0.6]) * radius
    wing = dict(
        chord=chord,
        taper=rng.uniform(0.3, 0.75),
        sweep=rng.uniform(0.0, 0.6),
        dihedral=rng.uniform(-0.03, 0.12),
        thickness=rng.uniform(0.012, 0.025),
    )
    parts = [fuselage, *_wing_pair(span, wing_y, wing_z, **wing)]

    fin_height = rng.uniform(0.1, 0.2) * length
    fin_chord = rng.uniform(0.1, 0.18) * length
    tail_y = -length / 2 + fin_chord * 0.5
    tail_z = upsweep
    parts.append(_fin(tail_y, tail_z, fin_height, fin_chord, rng.uniform(0.3, 0.9), wing["thickness"] * 0.8))
    t_tail = rng.random() < 0.3
    stabiliser_z = tail_z + (fin_height * 0.95 if t_tail else 0.0)
    stabiliser = dict(wing, chord=fin_chord * rng.uniform(0.8, 1.1), thickness=wing["thickness"] * 0.7)
    parts += _wing_pair(span * rng.uniform(0.3, 0.45), tail_y, stabiliser_z, **stabiliser)

    engines_per_wing = int(rng.integers(0, 3))
    engine_radius = radius * rng.uniform(0.35, 0.55)
    for k in range(engines_per_wing):
        x = span * (0.3 + 0.3 * k)
        y = wing_y + chord / 2 - wing["sweep"] * x + chord * 0.3
        z = wing_z - engine_radius * 1.2
        for side in (1.0, -1.0):
            start, end = [side * x, y - chord * 0.9, z], [side * x, y, z]
            parts.append(p.rod(start, end, engine_radius, p.SMALL_ROUND_SECTIONS))
    return parts


def car(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Lower body, cabin (sedan, hatchback, pickup or coupe), four wheels and optional spoiler and mirrors;
    length 1."""
    length, width = 1.0, rng.uniform(0.38, 0.47)
    wheel_radius = rng.uniform(0.07, 0.1)
    floor = wheel_radius * rng.uniform(0.5, 0.8)
    body_height = rng.uniform(0.12, 0.2)
    hood_drop = rng.uniform(0.02, 0.06)
    style = str(rng.choice(["sedan", "hatchback", "pickup", "coupe"]))
    parts = [_car_body(length, width, floor, body_height, hood_drop)]

    roof = floor + body_height
    cabin_height = rng.uniform(0.11, 0.17) * (0.8 if style == "coupe" else 1.0)
    rear, front = {
        "sedan": (-0.32, 0.1),
        "hatchback": (-0.47, 0.12),
        "pickup": (-0.08, 0.25),
        "coupe": (-0.35, 0.12),
    }[style]
    front += rng.uniform(-0.04, 0.04)
    rear_slant = {"hatchback": 0.03, "coupe": 0.2}.get(style, 0.1) * rng.uniform(0.7, 1.3)
    windshield = rng.uniform(0.1, 0.2)
    parts.append(
        _cabin(rear, front, roof, cabin_height, width * rng.uniform(0.78, 0.9), rear_slant, windshield)
    )
    if style == "pickup":
        parts += _cargo_bed(-length / 2 + 0.01, rear - 0.01, roof, width, rng.uniform(0.05, 0.09))
    if style == "hatchback" and rng.random() < 0.5:
        spare = [0, -length / 2 - 0.02, roof - 0.02]
        parts.append(p.rod(spare, [0, -length / 2 - 0.06, roof - 0.02], wheel_radius, p.ROUND_SECTIONS))

    front_axle = length / 2 - rng.uniform(0.14, 0.22)
    rear_axle = -length / 2 + rng.uniform(0.16, 0.26)
    tyre = rng.uniform(0.05, 0.08)
    for y in (front_axle, rear_axle):
        for side in (1.0, -1.0):
            outer = side * (width / 2 + 0.005)
            inner = side * (width / 2 - tyre)
            parts.append(
                p.rod([inner, y, wheel_radius], [outer, y, wheel_radius], wheel_radius, p.ROUND_SECTIONS)
            )
    if rng.random() < 0.4:
        parts.append(p.box([0, -length / 2 + 0.04, roof + 0.05], [width * 0.85, 0.06, 0.012]))
        for side in (1.0, -1.0):
            parts.append(p.box([side * width * 0.35, -length / 2 + 0.05, roof + 0.02], [0.015, 0.03, 0.05]))
    if rng.random() < 0.7:
        for side in (1.0, -1.0):
            parts.append(p.box([side * (width / 2 + 0.02), front - 0.02, roof + 0.03], [0.04, 0.02, 0.025]))
    return parts


def watercraft(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Hull with a pointed bow and a square stern, topped by a motorboat cabin, a sailing rig or a ship's
    superstructure; length 1."""
    length = 1.0
    beam = rng.uniform(0.22, 0.38)
    depth = rng.uniform(0.08, 0.16)
    freeboard = rng.uniform(0.03, 0.08)
    parts = [_hull(length, beam, depth, freeboard, rng.uniform(0.0, 0.25))]
    deck = freeboard
    style = str(rng.choice(["motorboat", "sailboat", "ship"]))
    if style == "motorboat":
        cabin_length = rng.uniform(0.25, 0.4)
        cabin_y = rng.uniform(-0.2, 0.0)
        cabin_height = rng.uniform(0.06, 0.12)
        outline = np.array(
            [
                [0, cabin_y - cabin_length / 2, deck],
                [0, cabin_y + cabin_length / 2, deck],
                [0, cabin_y + cabin_length / 2 - cabin_height * 1.2, deck + cabin_height],
                [0, cabin_y - cabin_length / 2, deck + cabin_height],
            ]
        )
        half = beam * rng.uniform(0.25, 0.4)
        across = np.array([half, 0, 0])
        parts.append(p.hull(np.vstack([outline + across, outline - across])))
        motor = [0, -length / 2 - 0.02, deck - depth * 0.4]
        parts.append(p.box(motor, [0.05, 0.05, depth * 1.4]))
    elif style == "sailboat":
        mast_y = rng.uniform(0.0, 0.2)
        mast_height = rng.uniform(0.7, 1.3)
        boom = rng.uniform(0.3, 0.45)
        parts.append(p.rod([0, mast_y, deck], [0, mast_y, deck + mast_height], 0.008))
        parts.append(p.rod([0, mast_y, deck + 0.1], [0, mast_y - boom, deck + 0.1], 0.006))
        mainsail = np.array(
            [
                [0, mast_y - 0.01, deck + 0.11],
                [0, mast_y - boom, deck + 0.11],
                [0, mast_y, deck + mast_height],
            ]
        )
        parts.append(p.slab_hull(mainsail, 0.006))
        if rng.random() < 0.7:
            bow = length / 2 - 0.06
            jib = np.array(
                [
                    [0, mast_y + 0.02, deck + 0.06],
                    [0, bow, deck + 0.04],
                    [0, mast_y + 0.01, deck + 0.8 * mast_height],
                ]
            )
            parts.append(p.slab_hull(jib, 0.006))
        parts.append(p.box([0, -0.1, deck + 0.02], [beam * 0.4, rng.uniform(0.15, 0.3), 0.04]))
    else:
        levels = int(rng.integers(1, 4))
        block_y = rng.uniform(-0.3, -0.1)
        block_length = rng.uniform(0.2, 0.35)
        z = deck
        for level in range(levels):
            shrink = 1.0 - 0.2 * level
            height = rng.uniform(0.04, 0.07)
            parts.append(
                p.box([0, block_y, z + height / 2], [beam * 0.7 * shrink, block_length * shrink, height])
            )
            z += height
        funnels = int(rng.integers(1, 3))
        for k in range(funnels):
            y = block_y - block_length * (0.1 + 0.3 * k)
            parts.append(p.disc([0, y, z + 0.05], 0.025, 0.1, p.SMALL_ROUND_SECTIONS))
    return parts


# --- shapes -----------------------------------------------------------------------------------------


def _fuselage_path(length: float, radius: float, nose: float, tail: float, upsweep: float):
    """Centre line (n, 3) and radii (n,) of a fuselage along Y: round nose, straight middle, tapered
    and raised tail."""
    y = np.linspace(-length / 2, length / 2, 19)
    radii = np.full_like(y, radius)
    z = np.zeros_like(y)
    in_nose = y > length / 2 - nose
    s = (y[in_nose] - (length / 2 - nose)) / nose
    radii[in_nose] = radius * np.sqrt(np.clip(1 - s**2, 0.04, 1.0))
    in_tail = y < -length / 2 + tail
    t = ((-length / 2 + tail) - y[in_tail]) / tail
    radii[in_tail] = radius * (1 - 0.7 * t)
    z[in_tail] = upsweep * t**1.5
    return np.column_stack([np.zeros_like(y), y, z]), radii


def _wing_pair(span, root_y, root_z, chord, taper, sweep, dihedral, thickness):
    """Left and right tapered, swept wing plates meeting at x = 0; `root_y` is the root chord's centre."""
    tip_x = span
    lead_root = root_y + chord / 2
    lead_tip = lead_root - sweep * tip_x
    outline = np.array(
        [
            [0.0, lead_root, root_z],
            [tip_x, lead_tip, root_z + dihedral * tip_x],
            [tip_x, lead_tip - chord * taper, root_z + dihedral * tip_x],
            [0.0, lead_root - chord, root_z],
        ]
    )
    mirrored = outline * [-1.0, 1.0, 1.0]
    return [p.slab_hull(outline, thickness), p.slab_hull(mirrored, thickness)]


def _fin(root_y, root_z, height, chord, sweep, thickness):
    """Vertical tail fin in the plane x = 0, swept back."""
    outline = np.array(
        [
            [0.0, root_y + chord / 2, root_z],
            [0.0, root_y + chord / 2 - sweep * height, root_z + height],
            [0.0, root_y + chord / 2 - sweep * height - chord * 0.55, root_z + height],
            [0.0, root_y - chord / 2, root_z],
        ]
    )
    return p.slab_hull(outline, thickness)


def _car_body(length, width, floor, height, hood_drop):
    """Lower body: a box along Y with a sloped nose, a lower hood and a straight tail."""
    y0, y1 = -length / 2, length / 2
    profile = np.array(
        [
            [y0, floor],
            [y1, floor + height * 0.15],
            [y1 - 0.02, floor + height * 0.65 - hood_drop],
            [y1 - 0.12, floor + height - hood_drop],
            [y0 + 0.03, floor + height],
            [y0, floor + height * 0.8],
        ]
    )
    points = [[side * width / 2, y, z] for side in (1.0, -1.0) for y, z in profile]
    return p.hull(np.array(points))


def _cabin(rear, front, base, height, width, rear_slant, windshield):
    """Greenhouse: a trapezoid in side view from `rear` to `front` along Y, its full width at the top as at
    the base (the narrower top points fall inside the hull of the full-width ones)."""
    profile = np.array(
        [[rear, base], [front, base], [front - windshield, base + height], [rear + rear_slant, base + height]]
    )
    points = [[side * half, y, z] for y, z in profile for side, half in ((1, width / 2), (-1, width / 2))]
    points += [[side * width * 0.42, y, base + height] for y in profile[2:, 0] for side in (1, -1)]
    return p.hull(np.array(points))


def _cargo_bed(rear, front, base, width, wall):
    """Open pickup bed: two side walls and a tailgate."""
    depth = front - rear
    middle = (front + rear) / 2
    sides = [
        p.box([side * (width / 2 - 0.01), middle, base + wall / 2], [0.02, depth, wall]) for side in (1, -1)
    ]
    return [*sides, p.box([0, rear + 0.01, base + wall / 2], [width, 0.02, wall])]


def _hull(length, beam, depth, freeboard, sheer):
    """Boat hull: convex hull of a deck outline (pointed bow at +Y, square stern) and a keel line."""
    y = np.linspace(-length / 2, length / 2, 9)
    widest = -0.1 * length
    bow = np.clip((y - widest) / (length / 2 - widest), 0, 1)
    half_width = beam / 2 * (1 - bow**2) + 0.004
    deck_z = freeboard + sheer * bow**2 * 0.2
    keel_z = -depth + depth * 0.8 * bow**3
    deck = [[side * w, yy, z] for yy, w, z in zip(y, half_width, deck_z, strict=True) for side in (1, -1)]
    keel = [
        [side * w * 0.25, yy, z] for yy, w, z in zip(y, half_width, keel_z, strict=True) for side in (1, -1)
    ]
    return p.hull(np.array(deck + keel))
