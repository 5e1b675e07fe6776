"""Closed, outward-facing mesh parts that the object classes are assembled from.

Every function returns a watertight `trimesh.Trimesh` with consistent outward winding, placed in the
object frame (Z up, +Y front, X lateral; arbitrary units: the assembled object is normalised afterwards).
Parts are combined by concatenation only (no mesh booleans), so overlapping parts are expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh
from trimesh import creation

#: Circle resolution of round parts: enough to read as round at 256 px, light enough to render thousands.
ROUND_SECTIONS = 16
SMALL_ROUND_SECTIONS = 10


def box(
    center: Sequence[float], size: Sequence[float], rotation: np.ndarray | None = None
) -> trimesh.Trimesh:
    """Axis-aligned box of extents `size` centred at `center`, optionally turned by a 3x3 `rotation`
    about its own centre."""
    transform = np.eye(4)
    if rotation is not None:
        transform[:3, :3] = rotation
    transform[:3, 3] = center
    return creation.box(extents=np.asarray(size, dtype=float), transform=transform)


def rod(start: Sequence[float], end: Sequence[float], radius: float, sections: int = SMALL_ROUND_SECTIONS):
    """Solid cylinder of `radius` whose axis runs from `start` to `end`."""
    return creation.cylinder(radius=radius, segment=np.array([start, end], dtype=float), sections=sections)


def disc(center: Sequence[float], radius: float, height: float, sections: int = ROUND_SECTIONS):
    """Vertical cylinder (axis Z) of `radius` and `height` centred at `center`."""
    center = np.asarray(center, dtype=float)
    half = np.array([0.0, 0.0, height / 2])
    return rod(center - half, center + half, radius, sections)


def frustum(
    base_center: Sequence[float],
    bottom_radius: float,
    top_radius: float,
    height: float,
    sections: int = ROUND_SECTIONS,
) -> trimesh.Trimesh:
    """Solid truncated cone standing on `base_center`, axis +Z."""
    profile = [[0.0, 0.0], [bottom_radius, 0.0], [top_radius, height], [0.0, height]]
    return revolved(profile, base_center, sections)


def revolved(
    profile: Sequence[Sequence[float]], base_center: Sequence[float], sections: int = ROUND_SECTIONS
):
    """Solid of revolution about the vertical axis through `base_center`.

    `profile`: (n, 2) points (radius, height) from the axis at the bottom, around the outline, back to
    the axis at the top; the solid it sweeps is closed.
    """
    mesh = creation.revolve(np.asarray(profile, dtype=float), sections=sections)
    mesh.apply_translation(np.asarray(base_center, dtype=float))
    return _outward(mesh)


def hull(points: np.ndarray) -> trimesh.Trimesh:
    """Convex hull of (n, 3) points."""
    return _outward(trimesh.convex.convex_hull(np.asarray(points, dtype=float)))


def slab_hull(outline: np.ndarray, thickness: float) -> trimesh.Trimesh:
    """Thin convex plate: the hull of a planar (n, 3) outline offset by +-thickness/2 along its normal."""
    outline = np.asarray(outline, dtype=float)
    normal = np.cross(outline[1] - outline[0], outline[2] - outline[0])
    normal = normal / np.linalg.norm(normal) * thickness / 2
    return hull(np.vstack([outline + normal, outline - normal]))


def polar_prism(radii: np.ndarray, thickness: float, transform: np.ndarray) -> trimesh.Trimesh:
    """Flat plate whose outline is star-shaped about its origin.

    `radii`: (n,) boundary distances at the n equally spaced angles 0..2pi (counter-clockwise from +u);
    the plate spans w in [-thickness/2, thickness/2] in its own (u, v, w) frame, which `transform` (4x4,
    rigid) places in the object.
    """
    angles = np.linspace(0.0, 2 * np.pi, len(radii), endpoint=False)
    outline = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
    vertices = np.vstack([[0.0, 0.0], outline])
    count = len(radii)
    faces = np.array([[0, 1 + i, 1 + (i + 1) % count] for i in range(count)])
    plate = creation.extrude_triangulation(vertices, faces, height=thickness)
    plate.apply_translation([0.0, 0.0, -thickness / 2])
    plate.apply_transform(transform)
    return _outward(plate)


def tube(
    path: np.ndarray, radii: float | np.ndarray, sections: int = SMALL_ROUND_SECTIONS
) -> trimesh.Trimesh:
    """Capped tube of circular cross-section swept along a polyline.

    `path`: (n, 3) centre points, n >= 2; `radii`: one radius or (n,) radii along the path. The
    cross-section frame is carried along by parallel transport, so bends do not twist the tube.
    """
    path = np.asarray(path, dtype=float)
    radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(path),))
    tangents = _path_tangents(path)
    normal = _any_perpendicular(tangents[0])
    angles = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    rings = []
    for point, tangent, radius in zip(path, tangents, radii, strict=True):
        normal = normal - np.dot(normal, tangent) * tangent
        normal /= np.linalg.norm(normal)
        binormal = np.cross(tangent, normal)
        rings.append(point + radius * (np.outer(np.cos(angles), normal) + np.outer(np.sin(angles), binormal)))
    vertices = np.vstack([*rings, path[0], path[-1]])
    faces = _tube_faces(len(path), sections)
    return _outward(trimesh.Trimesh(vertices, faces, process=False))


def rotation(axis: str, angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about the coordinate axis 'x', 'y' or 'z'."""
    return trimesh.transformations.rotation_matrix(angle, np.eye(3)["xyz".index(axis)])[:3, :3]


def rigid(rotation_matrix: np.ndarray, translation: Sequence[float]) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a translation."""
    transform = np.eye(4)
    transform[:3, :3] = rotation_matrix
    transform[:3, 3] = translation
    return transform


def arc(center: Sequence[float], radius: float, start: float, stop: float, count: int, plane: str = "yz"):
    """(count, 3) points on a circular arc in the coordinate `plane` ('xy', 'xz' or 'yz') from angle
    `start` to `stop` (radians, measured from the plane's first axis towards its second)."""
    angles = np.linspace(start, stop, count)
    points = np.tile(np.asarray(center, dtype=float), (count, 1))
    first, second = ("xyz".index(plane[0]), "xyz".index(plane[1]))
    points[:, first] += radius * np.cos(angles)
    points[:, second] += radius * np.sin(angles)
    return points


# --- helpers ----------------------------------------------------------------------------------------


def _outward(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The same closed part with its faces wound so that normals point out (positive volume)."""
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _path_tangents(path: np.ndarray) -> np.ndarray:
    """(n, 3) unit tangents of a polyline: central differences inside, one-sided at the ends."""
    tangents = np.gradient(path, axis=0)
    return tangents / np.linalg.norm(tangents, axis=1, keepdims=True)


def _any_perpendicular(direction: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to `direction`, chosen deterministically."""
    helper = np.eye(3)[int(np.argmin(np.abs(direction)))]
    perpendicular = np.cross(direction, helper)
    return perpendicular / np.linalg.norm(perpendicular)


def _tube_faces(rings: int, sections: int) -> np.ndarray:
    """Triangles of a tube with `rings` rings of `sections` vertices, then the two cap centres."""
    faces = []
    for ring in range(rings - 1):
        for j in range(sections):
            a, b = ring * sections + j, ring * sections + (j + 1) % sections
            c, d = a + sections, b + sections
            faces += [[a, b, d], [a, d, c]]
    first_cap, last_cap = rings * sections, rings * sections + 1
    last = (rings - 1) * sections
    for j in range(sections):
        faces.append([first_cap, (j + 1) % sections, j])
        faces.append([last_cap, last + j, last + (j + 1) % sections])
    return np.array(faces)
