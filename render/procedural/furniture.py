"""Furniture classes: bench, bookshelf, chair, sofa, table.

Each builder draws every choice from the generator it is given and returns the parts of one instance in
the object frame (Z up, front towards +Y, standing on z = 0; units of about a metre). A backrest, a back
panel, books, a drawer pedestal or an offset shelf break every rotational symmetry.
"""

from __future__ import annotations

import numpy as np
import trimesh

from render.procedural import parts as p


def chair(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Seat, a base (four legs, office pedestal or sled runners), a tilted backrest and optional arms."""
    width, depth = rng.uniform(0.4, 0.55), rng.uniform(0.38, 0.52)
    seat_height = rng.uniform(0.4, 0.5)
    seat = rng.uniform(0.03, 0.08)
    parts = [p.box([0, 0, seat_height - seat / 2], [width, depth, seat])]
    base = str(rng.choice(["legs", "pedestal", "sled"]))
    under_seat = seat_height - seat
    if base == "legs":
        parts += _four_legs(rng, width, depth, under_seat, inset=rng.uniform(0.01, 0.04))
        if rng.random() < 0.5:
            z = under_seat * rng.uniform(0.2, 0.4)
            parts += [
                p.rod([s * width * 0.42, -depth * 0.42, z], [s * width * 0.42, depth * 0.42, z], 0.01)
                for s in (1, -1)
            ]
    elif base == "pedestal":
        parts += _star_base(rng, under_seat, spokes=5, reach=rng.uniform(0.25, 0.33))
    else:
        for side in (1.0, -1.0):
            x = side * width * 0.45
            path = [
                [x, depth * 0.45, under_seat],
                [x, depth * 0.5, 0.02],
                [x, -depth * 0.5, 0.02],
                [x, -depth * 0.45, under_seat],
            ]
            parts.append(p.tube(np.array(path), 0.012))

    back_height = rng.uniform(0.35, 0.6)
    tilt = rng.uniform(0.0, 0.25)
    slats = int(rng.integers(0, 5))
    parts += _backrest(width, back_height, rng.uniform(0.02, 0.05), slats, tilt, [0, -depth / 2, seat_height])
    if rng.random() < 0.4:
        arm_z = seat_height + rng.uniform(0.18, 0.25)
        for side in (1.0, -1.0):
            x = side * (width / 2 - 0.02)
            parts.append(p.box([x, -0.02, arm_z], [0.05, depth * 0.85, 0.03]))
            parts.append(p.rod([x, depth * 0.35, seat_height], [x, depth * 0.35, arm_z], 0.012))
    return parts


def table(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Top on legs with either a drawer pedestal under one end (desk) or a drawer and a lower shelf that
    spans only part of the length."""
    length, depth = rng.uniform(0.9, 1.8), rng.uniform(0.5, 0.9)
    height = rng.uniform(0.65, 0.78)
    thickness = rng.uniform(0.02, 0.06)
    parts = [_table_top(rng, length, depth, thickness, height)]
    under_top = height - thickness
    if rng.random() < 0.5:
        pedestal_width = rng.uniform(0.3, 0.45)
        x = length / 2 - pedestal_width / 2 - 0.02
        parts.append(p.box([x, 0, under_top / 2], [pedestal_width, depth * 0.9, under_top]))
        drawers = int(rng.integers(2, 5))
        for k in range(drawers):
            z = under_top * (k + 0.5) / drawers
            parts.append(
                p.box([x, depth * 0.45 + 0.01, z], [pedestal_width * 0.85, 0.02, under_top / drawers * 0.8])
            )
            parts.append(p.box([x, depth * 0.45 + 0.03, z], [0.08, 0.02, 0.015]))
        far = -length / 2 + 0.05
        if rng.random() < 0.5:
            parts.append(p.box([far, 0, under_top / 2], [0.04, depth * 0.9, under_top]))
        else:
            parts += [
                p.rod([far, s * depth * 0.4, 0], [far, s * depth * 0.4, under_top], 0.025) for s in (1, -1)
            ]
        if rng.random() < 0.6:
            parts.append(
                p.box([(far + x) / 2, -depth * 0.4, under_top * 0.6], [x - far, 0.02, under_top * 0.6])
            )
        return parts

    inset = rng.uniform(0.03, 0.1)
    parts += _four_legs(rng, length, depth, under_top, inset=inset, size=(0.025, 0.045))
    apron = rng.uniform(0.06, 0.12)
    z = under_top - apron / 2
    for side in (1, -1):
        parts.append(p.box([0, side * (depth / 2 - inset), z], [length - 2 * inset, 0.02, apron]))
        parts.append(p.box([side * (length / 2 - inset), 0, z], [0.02, depth - 2 * inset, apron]))
    drawer_x = rng.uniform(-0.2, 0.2) * length
    parts.append(p.box([drawer_x, depth / 2 - inset + 0.015, z], [length * 0.3, 0.015, apron * 0.8]))
    parts.append(p.box([drawer_x, depth / 2 - inset + 0.03, z], [0.06, 0.02, 0.015]))
    shelf_span = rng.uniform(0.45, 0.7) * (length - 2 * inset)
    shelf_z = rng.uniform(0.12, 0.3)
    shelf_x = length / 2 - inset - shelf_span / 2
    parts.append(p.box([shelf_x, 0, shelf_z], [shelf_span, depth - 2 * inset, 0.02]))
    inner = length / 2 - inset - shelf_span
    parts.append(p.box([inner, 0, (shelf_z + z) / 2], [0.02, depth - 2 * inset, z - shelf_z]))
    return parts


def bench(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Long seat of boards on posts, end panels or tube frames, a backrest of rails and optional arms."""
    length, depth = rng.uniform(1.0, 1.9), rng.uniform(0.35, 0.55)
    seat_height = rng.uniform(0.38, 0.48)
    board = rng.uniform(0.025, 0.05)
    boards = int(rng.integers(1, 6))
    gap = 0.015 if boards > 1 else 0.0
    board_depth = (depth - gap * (boards - 1)) / boards
    parts = [
        p.box(
            [0, -depth / 2 + board_depth / 2 + k * (board_depth + gap), seat_height - board / 2],
            [length, board_depth, board],
        )
        for k in range(boards)
    ]
    under_seat = seat_height - board
    support = str(rng.choice(["posts", "panels", "frames"]))
    ends = rng.uniform(0.05, 0.2) * length
    if support == "posts":
        for x in (length / 2 - ends, -(length / 2 - ends)):
            parts += [p.box([x, s * depth * 0.4, under_seat / 2], [0.05, 0.05, under_seat]) for s in (1, -1)]
        if length > 1.4:
            parts += [p.box([0, s * depth * 0.4, under_seat / 2], [0.05, 0.05, under_seat]) for s in (1, -1)]
    elif support == "panels":
        parts += [
            p.box([s * (length / 2 - ends), 0, under_seat / 2], [0.04, depth * 0.9, under_seat])
            for s in (1, -1)
        ]
    else:
        for s in (1, -1):
            x = s * (length / 2 - ends)
            path = [
                [x, depth * 0.45, under_seat],
                [x, depth * 0.45, 0.02],
                [x, -depth * 0.45, 0.02],
                [x, -depth * 0.45, under_seat],
            ]
            parts.append(p.tube(np.array(path), 0.015))

    back_height = rng.uniform(0.25, 0.45)
    tilt = rng.uniform(0.05, 0.3)
    rails = int(rng.integers(1, 5))
    posts = 2 if length < 1.4 else 3
    post_x = np.linspace(-(length / 2 - ends), length / 2 - ends, posts)
    back = []
    for x in post_x:
        back.append(p.box([x, -0.02, back_height / 2], [0.04, 0.03, back_height]))
    rail_height = back_height / (rails + 0.5) * 0.7
    for k in range(rails):
        back.append(
            p.box(
                [0, 0.0, back_height - rail_height / 2 - k * back_height / rails * 0.95],
                [length * 0.98, 0.02, rail_height],
            )
        )
    parts += _placed(back, p.rotation("x", tilt), [0, -depth / 2, seat_height - 0.05])
    if rng.random() < 0.4:
        for s in (1, -1):
            x = s * (length / 2 - 0.03)
            parts.append(p.box([x, 0.0, seat_height + 0.2], [0.05, depth * 0.9, 0.03]))
            parts.append(p.box([x, depth * 0.38, seat_height + 0.1], [0.04, 0.04, 0.2]))
    return parts


def bookshelf(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Side panels, top, plinth, back panel, 3-6 unevenly spaced shelves (the lowest closed by doors or
    drawers) and rows of books that fill each shelf from one side. The case is deepest at the bottom:
    either its sides taper towards the top (ladder shelf) or a deep lower cabinet carries a shallower
    upper case (hutch)."""
    width, height, depth = rng.uniform(0.6, 1.6), rng.uniform(0.8, 2.0), rng.uniform(0.3, 0.45)
    panel = rng.uniform(0.015, 0.035)
    plinth = rng.uniform(0.05, 0.12)
    inner = width - 2 * panel
    back = -depth / 2
    shelves = int(rng.integers(3, 7))
    gaps = rng.uniform(0.8, 1.2, shelves) * np.linspace(1.25, 0.9, shelves)
    tops = plinth + np.cumsum(gaps) / gaps.sum() * (height - panel - plinth)
    levels = np.concatenate([[plinth], tops[:-1]])
    if rng.random() < 0.5:
        taper = rng.uniform(0.35, 0.6)

        def depth_at(z):
            return depth * (1 - taper * z / height)

        side = np.array(
            [[0, back, 0], [0, back + depth, 0], [0, back + depth_at(height), height], [0, back, height]]
        )
        parts = [p.slab_hull(side + np.array([s * (width / 2 - panel / 2), 0, 0]), panel) for s in (1, -1)]
    else:
        step = tops[0] + panel
        upper = depth * rng.uniform(0.45, 0.7)

        def depth_at(z):
            return depth if z < step else upper

        parts = []
        for s in (1, -1):
            x = s * (width / 2 - panel / 2)
            parts.append(p.box([x, 0, step / 2], [panel, depth, step]))
            parts.append(p.box([x, back + upper / 2, (step + height) / 2], [panel, upper, height - step]))
        parts.append(p.box([0, 0, step - panel / 2], [width + 0.03, depth + 0.02, panel]))
    top_depth = depth_at(height)
    parts.append(
        p.box(
            [0, back + top_depth / 2 + 0.01, height - panel / 2],
            [width + rng.uniform(0.0, 0.06), top_depth + 0.02, panel],
        )
    )
    parts.append(p.box([0, back + depth - 0.03, plinth / 2], [inner, 0.02, plinth]))
    parts.append(p.box([0, back + 0.005, height / 2], [inner, 0.01, height]))
    doors = rng.random() < 0.5
    for level, (bottom, top) in enumerate(zip(levels, tops, strict=True)):
        shelf_depth = depth_at(bottom) - 0.01
        parts.append(p.box([0, back + shelf_depth / 2, bottom + panel / 2], [inner, shelf_depth, panel]))
        if level == 0:
            parts += _cabinet_front(inner, back + depth, bottom, top, doors)
        else:
            parts += _books(rng, inner, back, depth_at(top), bottom + panel, top - bottom - panel)
    return parts


def sofa(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """Upholstered base, 1-4 seat cushions, a thick tilted back, two arms, short feet and, on some, a chaise
    extension on one side."""
    seats = int(rng.integers(1, 5))
    seat_width = rng.uniform(0.5, 0.7)
    arm = rng.uniform(0.1, 0.25)
    length = seats * seat_width + 2 * arm
    depth = rng.uniform(0.8, 1.0)
    foot = rng.uniform(0.04, 0.12)
    base_top = foot + rng.uniform(0.2, 0.3)
    cushion = rng.uniform(0.1, 0.16)
    back_thickness = rng.uniform(0.15, 0.25)
    parts = [p.box([0, 0, (foot + base_top) / 2], [length, depth, base_top - foot])]
    for k in range(seats):
        x = -length / 2 + arm + (k + 0.5) * seat_width
        parts.append(
            p.box(
                [x, back_thickness / 2, base_top + cushion / 2],
                [seat_width * 0.98, depth - back_thickness, cushion],
            )
        )
    back_height = rng.uniform(0.35, 0.5)
    tilt = rng.uniform(0.05, 0.25)
    back = [p.box([0, back_thickness / 2, back_height / 2], [length - 2 * arm, back_thickness, back_height])]
    parts += _placed(back, p.rotation("x", tilt), [0, -depth / 2, base_top])
    arm_height = base_top + rng.uniform(0.12, 0.25)
    parts += [
        p.box([s * (length / 2 - arm / 2), 0, (foot + arm_height) / 2], [arm, depth, arm_height - foot])
        for s in (1, -1)
    ]
    for x in (length / 2 - 0.05, -(length / 2 - 0.05)):
        parts += [p.box([x, s * (depth / 2 - 0.05), foot / 2], [0.05, 0.05, foot]) for s in (1, -1)]
    if seats >= 2 and rng.random() < 0.4:
        side = float(rng.choice([-1.0, 1.0]))
        chaise = rng.uniform(0.5, 0.8)
        x = side * (length / 2 - arm - seat_width / 2)
        parts.append(
            p.box([x, depth / 2 + chaise / 2, (foot + base_top) / 2], [seat_width, chaise, base_top - foot])
        )
        parts.append(
            p.box([x, depth / 2 + chaise / 2, base_top + cushion / 2], [seat_width * 0.98, chaise, cushion])
        )
    return parts


# --- shared pieces ---------------------------------------------------------------------------------


def _four_legs(rng, width, depth, height, inset, size=(0.02, 0.04)):
    """Four legs from the floor to `height` under a width x depth rectangle, round or square, straight or
    splayed."""
    thickness = rng.uniform(*size)
    round_legs = rng.random() < 0.5
    splay = rng.uniform(0.0, 0.06) if rng.random() < 0.4 else 0.0
    legs = []
    for sx in (1, -1):
        for sy in (1, -1):
            top = np.array(
                [sx * (width / 2 - inset - thickness / 2), sy * (depth / 2 - inset - thickness / 2), height]
            )
            foot = top + np.array([sx * splay, sy * splay, -height])
            if round_legs:
                legs.append(p.rod(foot, top, thickness / 2))
            else:
                corners = [
                    [x + dx * thickness / 2, y + dy * thickness / 2, z]
                    for x, y, z in (foot, top)
                    for dx in (-1, 1)
                    for dy in (-1, 1)
                ]
                legs.append(p.hull(np.array(corners)))
    return legs


def _star_base(rng, height, spokes, reach):
    """Office-chair base: a column, `spokes` arms (one pointing to +Y) and a caster under each arm."""
    parts = [p.rod([0, 0, 0.08], [0, 0, height], rng.uniform(0.02, 0.035), p.ROUND_SECTIONS)]
    for k in range(spokes):
        angle = np.pi / 2 + 2 * np.pi * k / spokes
        tip = [reach * np.cos(angle), reach * np.sin(angle), 0.06]
        parts.append(p.rod([0, 0, 0.08], tip, 0.018))
        parts.append(p.disc([tip[0], tip[1], 0.03], 0.025, 0.025, p.SMALL_ROUND_SECTIONS))
    return parts


def _backrest(width, height, thickness, slats, tilt, hinge):
    """Chair back: two posts and a top rail with `slats` vertical slats, or a solid panel when `slats` is
    0; tilted back by `tilt` radians about the seat's back edge `hinge`."""
    if slats == 0:
        pieces = [p.box([0, 0, height / 2], [width, thickness, height])]
    else:
        rail = height * 0.25
        pieces = [p.box([s * (width / 2 - 0.02), 0, height / 2], [0.04, thickness, height]) for s in (1, -1)]
        pieces.append(p.box([0, 0, height - rail / 2], [width, thickness, rail]))
        for x in np.linspace(-width / 2, width / 2, slats + 2)[1:-1]:
            pieces.append(p.box([x, 0, (height - rail) / 2], [0.03, thickness * 0.6, height - rail]))
    return _placed(pieces, p.rotation("x", tilt), hinge)


def _placed(pieces, rotation, origin):
    """The pieces turned by the 3x3 `rotation` about the origin, then moved to `origin`."""
    transform = p.rigid(rotation, origin)
    for piece in pieces:
        piece.apply_transform(transform)
    return pieces


def _table_top(rng, length, depth, thickness, height):
    """Rectangular or rounded (super-elliptic) table top whose upper face is at `height`."""
    if rng.random() < 0.5:
        return p.box([0, 0, height - thickness / 2], [length, depth, thickness])
    exponent = rng.uniform(2.5, 6.0)
    angles = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    radii = (
        np.abs(np.cos(angles) / (length / 2)) ** exponent + np.abs(np.sin(angles) / (depth / 2)) ** exponent
    ) ** (-1 / exponent)
    return p.polar_prism(radii, thickness, p.rigid(np.eye(3), [0, 0, height - thickness / 2]))


def _cabinet_front(width, front, bottom, top, doors):
    """Front (at y = `front`) closing the compartment between `bottom` and `top`: one or two doors with
    knobs, or a stack of drawers with handles."""
    height = top - bottom
    y = front - 0.01
    if doors:
        count = 1 if width < 0.9 else 2
        door_width = width / count
        pieces = []
        for k in range(count):
            x = -width / 2 + (k + 0.5) * door_width
            pieces.append(p.box([x, y, bottom + height / 2], [door_width - 0.004, 0.02, height]))
            knob_x = x + (door_width * 0.35 if k == 0 else -door_width * 0.35)
            pieces.append(p.box([knob_x, y + 0.02, bottom + height * 0.6], [0.02, 0.02, 0.05]))
        return pieces
    count = max(1, round(height / 0.18))
    pieces = []
    for k in range(count):
        z = bottom + (k + 0.5) * height / count
        pieces.append(p.box([0, y, z], [width - 0.004, 0.02, height / count - 0.004]))
        pieces.append(p.box([0, y + 0.02, z], [min(0.15, width * 0.3), 0.02, 0.02]))
    return pieces


def _books(rng, width, back, depth, base, clearance):
    """A row of upright books standing on a shelf whose back is at y = `back`, filling it from one randomly
    chosen side."""
    fill = rng.uniform(0.2, 0.8) * width
    side = 1.0 if rng.random() < 0.5 else -1.0
    books, x = [], 0.0
    while True:
        thickness = rng.uniform(0.025, 0.07)
        if x + thickness > fill:
            return books
        height = clearance * rng.uniform(0.6, 0.92)
        book_depth = depth * rng.uniform(0.6, 0.85)
        center = side * (width / 2 - x - thickness / 2)
        books.append(
            p.box([center, back + 0.01 + book_depth / 2, base + height / 2], [thickness, book_depth, height])
        )
        x += thickness
