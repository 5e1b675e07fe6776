"""The procedural object library: class registry, seeded instances and ShapeNet-like normalisation."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import numpy as np
import trimesh

from render import spec
from render.procedural import containers, devices, furniture, vehicles

Builder = Callable[[np.random.Generator], list[trimesh.Trimesh]]

_BUILDERS: dict[str, Builder] = {
    "airplane": vehicles.airplane,
    "bench": furniture.bench,
    "bookshelf": furniture.bookshelf,
    "bottle": containers.bottle,
    "car": vehicles.car,
    "chair": furniture.chair,
    "guitar": devices.guitar,
    "lamp": devices.lamp,
    "laptop": devices.laptop,
    "mug": containers.mug,
    "sofa": furniture.sofa,
    "table": furniture.table,
    "watercraft": vehicles.watercraft,
}

#: Class names of the library, sorted.
CLASSES: tuple[str, ...] = tuple(sorted(_BUILDERS))

_OBJECT_ID = re.compile(r"^(?P<class_name>[a-z]+)-s(?P<seed>\d+)-i(?P<index>\d+)$")


def _shapenet_synset_ids(class_names: tuple[str, ...]) -> dict[str, str]:
    """Class name -> ShapeNetCore v2 synset id, for classes named as in the synset list."""
    by_name = {synset.name: synset.synset for synset in spec.shapenet_synsets()}
    missing = [name for name in class_names if name not in by_name]
    if missing:
        raise ValueError(f"{spec.SYNSETS_CSV}: no ShapeNet synset named {missing}")
    return {name: by_name[name] for name in class_names}


#: Class name -> 8-digit ShapeNetCore v2 synset id.
SYNSETS: dict[str, str] = _shapenet_synset_ids(CLASSES)


def make_mesh(class_name: str, index: int, seed: int = 0) -> trimesh.Trimesh:
    """Instance `index` of `class_name` under library `seed`.

    The mesh is Z up with its bounding-box centre at the origin and a bounding-box diagonal of 1 (as a
    ShapeNet model_normalized.obj after Blender's OBJ import). The same (class, index, seed) gives the same
    mesh, bit for bit, in any order and any process.
    """
    _check_instance(class_name, index, seed)
    rng = instance_generator(class_name, index, seed)
    return normalise(assemble(_BUILDERS[class_name](rng)))


#: Instances per class an object id can number (`object_id`: five digits).
MAX_PER_CLASS = 100_000


def object_id(class_name: str, index: int, seed: int = 0) -> str:
    """Stable, filesystem-safe, unique id of an instance, e.g. 'chair-s0-i00012'."""
    _check_instance(class_name, index, seed)
    return f"{class_name}-s{seed}-i{index:05d}"


def parse_object_id(identifier: str) -> tuple[str, int, int]:
    """(class_name, index, seed) of an id made by `object_id`; ValueError when it is not one."""
    match = _OBJECT_ID.match(identifier)
    if match is None:
        raise ValueError(f"{identifier!r} is not a procedural object id (expected CLASS-sSEED-iINDEX)")
    if match["class_name"] not in _BUILDERS:
        raise ValueError(
            f"{identifier!r} names no procedural class ({match['class_name']!r}; the classes: "
            f"{', '.join(_BUILDERS)})"
        )
    parsed = match["class_name"], int(match["index"]), int(match["seed"])
    canonical = object_id(*parsed)
    if identifier != canonical:  # "mug-s0-i0" and "mug-s0-i00000" would be one shape under two ids
        raise ValueError(
            f"{identifier!r} is not a procedural object id as written by the library ({canonical!r})"
        )
    return parsed


def instance_generator(class_name: str, index: int, seed: int) -> np.random.Generator:
    """The random generator of one instance, seeded by a hash of (class, index, seed)."""
    digest = hashlib.sha256(f"3die-procedural/{class_name}/{index}/{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def assemble(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """One mesh from closed parts by concatenation (no booleans), without degenerate faces."""
    mesh = trimesh.util.concatenate(parts)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    return mesh


def normalise(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh moved so its bounding-box centre is the origin and scaled to a bounding-box diagonal of 1."""
    low, high = mesh.bounds
    vertices = (mesh.vertices - (low + high) / 2) / np.linalg.norm(high - low)
    return trimesh.Trimesh(vertices, mesh.faces, process=False)


def _check_instance(class_name: str, index: int, seed: int) -> None:
    """Raise ValueError with the valid choices for an unknown class or a negative index or seed."""
    if class_name not in _BUILDERS:
        raise ValueError(f"unknown procedural class {class_name!r}; valid classes: {', '.join(CLASSES)}")
    for name, value in (("index", index), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
