"""The built-in procedural object library: the default object source when no ShapeNet copy is at hand.

Each class is an unlimited family of seeded instances assembled from trimesh primitives by concatenation,
normalised like a ShapeNet model_normalized.obj after Blender's OBJ import (Z up, bounding-box centre at
the origin, bounding-box diagonal 1), and free of rotational symmetry so that the rotation between two
views of an instance is never ambiguous.
"""

from render.procedural.library import CLASSES, MAX_PER_CLASS, SYNSETS, make_mesh, object_id, parse_object_id

__all__ = ["CLASSES", "MAX_PER_CLASS", "SYNSETS", "make_mesh", "object_id", "parse_object_id"]
