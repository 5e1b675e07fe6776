"""Where objects come from: a ShapeNetCore v2 folder, any mesh folder, or the procedural library.

Every source lists its objects as `ObjectSpec`s (synset, object id, label, split, source, path) and loads
one object's mesh for the scene: `MeshArrays` (vertex/face arrays, Z up, bounding-box centre at the
origin, diagonal 1) or, for ShapeNet, an `ObjFile` that Blender imports with its materials and textures.
Sources are small picklable dataclasses so worker processes and SLURM jobs can rebuild them.
"""

from __future__ import annotations

import os
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from render import spec

SHAPENET_MODEL = Path("models") / "model_normalized.obj"
MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
UP_AXES = ("z", "y")
#: What np.load raises for a damaged .npy file (its header is parsed as a Python literal).
NPY_ERRORS = (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError, MemoryError)
#: Mesh files above this size (bytes) are refused before they are read: decimate them first.
MAX_MESH_BYTES = 2 * 2**30
#: Below this total face area (of the normalised mesh, diagonal 1) a mesh is flat or a line: nothing to see.
MIN_SURFACE_AREA = 1e-9
#: Largest finite float32: Blender stores coordinates as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class SourceError(Exception):
    """The object source itself is unusable (a missing folder, an unreadable object list)."""


class MeshError(Exception):
    """One object's mesh is missing, unreadable or empty: the object is recorded as failed and skipped."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a dataset; `path` is its mesh file (None for procedural objects)."""

    synset: str
    object_id: str
    label: int
    split: str
    source: str
    path: Path | None = None

    @property
    def key(self) -> str:
        """ "SYNSET/OBJECT_ID", the object's folder relative to the dataset root."""
        return f"{self.synset}/{self.object_id}"


@dataclass(frozen=True)
class MeshArrays:
    """A triangle mesh as arrays: vertices (N, 3) float, faces (M, 3) int, optional colours.

    colors: sRGB in [0, 1], shape (N, 4) when color_domain is "POINT" (per vertex) or (3M, 4) when it is
    "CORNER" (per face corner, in face order). warnings: what reading the file fell back on (a missing
    material library or texture), for warnings.jsonl.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    color_domain: str = "POINT"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjFile:
    """A Wavefront OBJ file for Blender's importer (ShapeNet: Y up, with .mtl materials and textures), and
    the warnings reading it gave (`scan_obj`: missing material libraries)."""

    path: Path
    warnings: tuple[str, ...] = ()


def scan_obj(path: Path) -> tuple[str, ...]:
    """One pass over an OBJ file before Blender imports it.

    Raises MeshError naming the first vertex line whose coordinates are not finite float32 numbers
    (Blender's importer would silently read NaN, infinity or an overflowing number as 0). Returns one
    warning per `mtllib` file it names that is not beside it (the importer then gives the object its
    default grey material, silently).
    """
    return _scan_obj(path)[0]


def _scan_obj(path: Path) -> tuple[tuple[str, ...], list[Path]]:
    """`scan_obj`'s warnings, and the material libraries the OBJ names that are beside it."""
    folder, missing, present = Path(path).parent, [], []
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith(b"v "):
                try:
                    finite = all(abs(float(token)) <= FLOAT32_MAX for token in line.split()[1:4])
                except ValueError:
                    continue  # a malformed line: the importer's own problem, reported when it finds no mesh
                if not finite:
                    text = line.decode("utf-8", "replace").strip()
                    raise MeshError(f"{path}:{number}: non-finite vertex coordinates ({text[:80]})")
            elif line.startswith(b"mtllib"):
                for name in line[len(b"mtllib") :].decode("utf-8", "replace").split():
                    if (folder / name).is_file():
                        present.append(folder / name)
                    else:
                        missing.append(
                            f"material library {folder / name} is missing: the object renders in the "
                            "importer's default grey"
                        )
    return tuple(missing), present


def libraries_name_texture(libraries: list[Path]) -> bool:
    """Whether one of these material libraries names a texture image (a `map_...` statement)."""
    for library in libraries:
        try:
            text = library.read_bytes()
        except OSError:
            continue
        if any(line.strip().startswith(b"map_") for line in text.splitlines()):
            return True
    return False


# --- mesh arrays -------------------------------------------------------------------------------------
def mesh_arrays_from_trimesh(mesh, up_axis: str = "z", textured: bool = True) -> MeshArrays:
    """Normalised MeshArrays of a trimesh.Trimesh: turned Z up (from Y up when up_axis is "y"), bounding-box
    centre at the origin, bounding-box diagonal 1, colours kept when the mesh has vertex or face colours.

    Raises MeshError for a mesh without faces, with non-finite vertices, faces naming missing vertices, a
    zero-size bounding box or a zero surface area (every face degenerate). `textured`: whether the file
    names a texture image, so that texture visuals without colours mean a texture that did not load.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshError("the mesh has no faces")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"faces name vertices outside 0..{len(vertices) - 1}")
    vertices = normalised_surface(turn_z_up(vertices, up_axis), faces)
    colors, domain, warnings = _mesh_colours(mesh, textured)
    return MeshArrays(vertices, faces, colors, domain, warnings)


def normalised_surface(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) vertices normalised by `normalise_vertices`, once the mesh is known to be visible.

    Raises MeshError for non-finite coordinates, a zero-size bounding box, coordinates whose extent
    overflows float64, or a zero surface area (every face of the (M, 3) `faces` degenerate).
    """
    if not np.all(np.isfinite(vertices)):
        raise MeshError("the mesh has non-finite vertex coordinates")
    vertices = normalise_vertices(vertices)
    if surface_area(vertices, faces) < MIN_SURFACE_AREA:
        raise MeshError("the mesh has zero surface area (every face is degenerate)")
    return vertices


def turn_z_up(vertices: np.ndarray, up_axis: str) -> np.ndarray:
    """(N, 3) vertices of a mesh whose up axis is `up_axis` ("z" or "y") -> Z up.

    Y up turns the way Blender's OBJ importer turns ShapeNet: (x, y, z) -> (x, -z, y).
    """
    if up_axis not in UP_AXES:
        raise ValueError(f"up axis must be one of {UP_AXES}, got {up_axis!r}")
    if up_axis == "z":
        return vertices
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)


def normalise_vertices(vertices: np.ndarray) -> np.ndarray:
    """(N, 3) vertices moved so the bounding-box centre is the origin and scaled to a diagonal of 1."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing extent is refused below
        extent = high - low
        diagonal = float(np.linalg.norm(extent))
        if np.isinf(diagonal) and np.isfinite(extent).all():  # the sum of squares overflowed, not the extent
            diagonal = float(extent.max() * np.linalg.norm(extent / extent.max()))
    if diagonal <= 0:
        raise MeshError("the mesh has a zero-size bounding box")
    if not np.isfinite(diagonal):
        raise MeshError("the mesh's coordinates span more than float64 can hold")
    return (vertices - (low + high) / 2) / diagonal


def surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Total area of the triangles: vertices (N, 3), faces (M, 3) indices."""
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return float(np.linalg.norm(normals, axis=1).sum() / 2)


def check_mesh_file_size(path: Path) -> None:
    """MeshError when the file is larger than MAX_MESH_BYTES (it would exhaust a worker's memory)."""
    size = Path(path).stat().st_size
    if size > MAX_MESH_BYTES:
        raise MeshError(
            f"{path}: {size / 2**30:.1f} GiB, above the {MAX_MESH_BYTES / 2**30:.0f} GiB a mesh file may "
            "have; decimate or split it"
        )


def _mesh_colours(mesh, textured: bool = True) -> tuple[np.ndarray | None, str, tuple[str, ...]]:
    """sRGB colours in [0, 1] of a trimesh's visual, their Blender domain ("POINT" or "CORNER") and, when
    the file names a texture (`textured`) that could not be read, a warning (the object then takes its
    material's colour, as a ShapeNet object whose texture is missing does; a material without texture
    takes it silently)."""
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        material = getattr(visual, "material", None)
        try:
            colours = visual.to_color()
        except (AttributeError, ValueError, IndexError, TypeError):
            colours = None
        if colours is None or colours.kind != "vertex":
            name = getattr(material, "name", None) or "of the mesh"
            warning = (
                f"material {name}: texture missing or unreadable: the object renders in its material's colour"
            )
            main = getattr(material, "main_color", None)
            main = np.asarray((204, 204, 204, 255) if main is None else main, dtype=np.float64)
            colours = np.tile(main[:4] / 255.0, (len(mesh.vertices), 1))
            return colours, "POINT", (warning,) if textured else ()
        visual, kind = colours, "vertex"
    if kind == "vertex":
        return np.asarray(visual.vertex_colors, dtype=np.float64) / 255.0, "POINT", ()
    if kind == "face":
        corners = np.repeat(np.asarray(visual.face_colors, dtype=np.float64) / 255.0, 3, axis=0)
        return corners, "CORNER", ()
    return None, "POINT", ()


def load_mesh_file(path: Path, up_axis: str = "z") -> MeshArrays:
    """Read a mesh file with trimesh (all geometry of a scene file concatenated) as normalised MeshArrays.

    Raises MeshError when the file is missing, unreadable or holds no faces.
    """
    import trimesh

    path = Path(path)
    if _is_broken_link(path):
        raise MeshError(_broken_link_error(path))
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    check_mesh_file_size(path)
    obj = path.suffix.lower() == ".obj"
    library_warnings, libraries = _scan_obj(path) if obj else ((), [])
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh raises many kinds for broken files
        raise MeshError(f"{path}: trimesh cannot read it ({type(error).__name__}: {error})") from None
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(f"{path}: holds no triangle mesh")
    try:
        arrays = mesh_arrays_from_trimesh(
            mesh, up_axis, textured=not obj or libraries_name_texture(libraries)
        )
    except MeshError as error:
        raise MeshError(f"{path}: {error}") from None
    except Exception as error:  # trimesh's arrays of an unusual file: a failure of this object, not the run
        raise MeshError(f"{path}: cannot read its geometry ({type(error).__name__}: {error})") from None
    return replace(arrays, warnings=(*library_warnings, *arrays.warnings))


# --- sources -----------------------------------------------------------------------------------------
class ObjectSource(Protocol):
    """Where a dataset's objects come from."""

    kind: str  # "shapenet", "mesh-dir" or "procedural": the `source` column of objects.csv

    def objects(self) -> list[ObjectSpec]:
        """Every object of the source (or of its object list), in a deterministic order."""

    def classes(self, objects: list[ObjectSpec]) -> tuple[spec.Synset, ...]:
        """The classes of a dataset made of `objects`, in label order."""

    def load(self, obj: ObjectSpec) -> MeshArrays | ObjFile:
        """The object's mesh; raises MeshError when it is missing, unreadable or empty."""

    def describe(self) -> dict:
        """What manifest.json records about the source."""


@dataclass(frozen=True)
class ShapeNetSource:
    """A ShapeNetCore v2 folder: ROOT/SYNSET/OBJECT_ID/models/model_normalized.obj (+ .mtl, ../images/).

    Labels are positions in the sorted 55 synsets. `objects_file` selects objects: an objects CSV (labels
    and splits as given) or a published-style images .npy ("/SYNSET/OBJECT_ID/" strings). Without a CSV,
    the split follows the official 3DIEBench validation list (listed: val, all others: train). Unlike the
    published loader, no taxonomy.json is needed.
    """

    root: Path
    objects_file: Path | None = None
    kind: str = field(default="shapenet", init=False)

    def objects(self) -> list[ObjectSpec]:
        from render import manifest

        root = _existing_folder(self.root, "--shapenet-dir")
        if self.objects_file is not None and Path(self.objects_file).suffix.lower() != ".npy":
            entries = _read_objects_csv(self.objects_file, self.kind)
        else:
            if self.objects_file is not None:
                keys = read_images_npy(self.objects_file)
            else:
                keys = _listed(_shapenet_folders, root)
            origin = self.objects_file or root
            for number, (synset, object_id) in enumerate(keys, start=1):
                if synset not in spec.shapenet_synset_ids():
                    raise SourceError(
                        f"{origin}: entry {number} ({synset!r}, {object_id!r}): {synset!r} is not one of the "
                        f"55 ShapeNetCore v2 synset ids ({spec.SYNSETS_CSV.name})"
                    )
            entries = [
                manifest.ObjectEntry(s, o, manifest.shapenet_label(s), "train", self.kind) for s, o in keys
            ]
            try:
                manifest.validate_entries(entries, origin=str(origin))
            except manifest.ManifestError as error:  # its message names `origin`
                raise SourceError(str(error)) from None
            entries = manifest.split_by_official_list(entries)
        return [_spec(entry, root / entry.synset / entry.object_id / SHAPENET_MODEL) for entry in entries]

    def classes(self, objects: list[ObjectSpec]) -> tuple[spec.Synset, ...]:
        return spec.shapenet_synsets()

    def other_folders(self) -> list[str]:
        """Folders of the root that are not ShapeNetCore v2 synsets, which a render without `objects_file`
        leaves out (sorted; hidden folders not listed)."""
        folders = (path.name for path in Path(self.root).iterdir() if path.is_dir())
        return sorted(
            name for name in folders if name not in spec.shapenet_synset_ids() and not name.startswith(".")
        )

    def load(self, obj: ObjectSpec) -> ObjFile:
        path = Path(obj.path)
        if not path.is_file():
            raise MeshError(f"{path}: missing (the object folder has no {SHAPENET_MODEL})")
        try:
            if path.stat().st_size == 0:
                raise MeshError(f"{path}: empty file")
            check_mesh_file_size(path)
            warnings = scan_obj(path)
        except OSError as error:  # an unreadable file is this object's problem, not the run's
            raise MeshError(f"{path}: cannot read it ({error.strerror or error})") from None
        return ObjFile(path, warnings)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "objects_file": _optional_str(self.objects_file)}


#: Procedural objects per class when --per-class is not given.
PROCEDURAL_PER_CLASS = 10


@dataclass(frozen=True)
class MeshDirSource:
    """Any mesh folder: ROOT/CLASS/NAME.{obj,glb,gltf,ply,stl,off}, read with trimesh.

    The synset of an object is its class folder name and its id the file name without extension; labels
    are positions of the sorted class names of the dataset. Meshes are turned Z up when `up_axis` is "y",
    then normalised like ShapeNet's (bounding-box centre at the origin, diagonal 1). The split comes from
    `objects_file` (an objects CSV) or, without one, from the deterministic class-stratified 80/20 split.
    """

    root: Path
    objects_file: Path | None = None
    up_axis: str = "z"
    seed: int = 0
    kind: str = field(default="mesh-dir", init=False)

    def objects(self) -> list[ObjectSpec]:
        files = _listed(self._mesh_files)
        if self.objects_file is not None:
            entries = _read_objects_csv(self.objects_file, self.kind)
        else:
            entries = _labelled_and_split(sorted(files), self.kind, self.seed)
        return [_spec(entry, files.get(entry.key)) for entry in entries]

    def classes(self, objects: list[ObjectSpec]) -> tuple[spec.Synset, ...]:
        return _classes_of(objects, names={})

    def load(self, obj: ObjectSpec) -> MeshArrays:
        if obj.path is None:
            raise MeshError(f"{Path(self.root) / obj.synset}: no mesh file named {obj.object_id}.*")
        return load_mesh_file(obj.path, self.up_axis)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "root": str(self.root),
            "objects_file": _optional_str(self.objects_file),
            "up_axis": self.up_axis,
        }

    def _mesh_files(self) -> dict[tuple[str, str], Path]:
        """(class, name) -> mesh file; two files with one name in one class folder, or a name that cannot
        be a dataset folder's, are an error."""
        from render import manifest

        root = _existing_folder(self.root, "--mesh-dir")
        layout = f"expected ROOT/CLASS/NAME.{{{','.join(ext.lstrip('.') for ext in MESH_EXTENSIONS)}}}"
        files: dict[tuple[str, str], Path] = {}
        for link in sorted(p for p in root.iterdir() if _is_broken_link(p)):
            raise SourceError(_broken_link_error(link))  # a class behind it would be dropped
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            meshes = [p for p in sorted(folder.iterdir()) if _is_mesh_entry(p)]
            if not meshes:  # a class of nothing is a layout mistake (e.g. CLASS/NAME/model.obj)
                raise SourceError(
                    f"{folder}: no mesh file directly in this class folder; {layout} (ShapeNet's "
                    "SYNSET/ID/models/ layout: --shapenet-dir)"
                )
            for path in meshes:
                key = (folder.name, path.stem)
                named = [name for name in key if not manifest.is_folder_name(name)]
                if named:
                    raise SourceError(
                        f"{path}: {named[0]!r} cannot name a class or object folder of the dataset (spaces "
                        "around it, a slash or an unprintable or undecodable character); rename it"
                    )
                if key in files:
                    raise SourceError(f"{files[key]} and {path}: two meshes named {path.stem}; rename one")
                files[key] = path
        if not files:
            loose = any(p.is_file() and _is_mesh_file(p) for p in root.iterdir())
            hint = "; the meshes directly in ROOT need class folders" if loose else ""
            raise SourceError(f"{root}: no meshes; {layout}{hint}")
        return files


@dataclass(frozen=True)
class ProceduralSource:
    """The built-in procedural library (render.procedural): `per_class` seeded instances of each class.

    `class_names` picks classes (all of render.procedural.CLASSES when None); synsets are the classes'
    ShapeNet synset ids and labels the positions of the dataset's sorted synset ids. Meshes go to Blender as
    arrays. The split is the deterministic class-stratified 80/20 split, or comes from `objects_file`.
    """

    class_names: tuple[str, ...] | None = None
    per_class: int = PROCEDURAL_PER_CLASS
    seed: int = 0
    objects_file: Path | None = None
    kind: str = field(default="procedural", init=False)

    def objects(self) -> list[ObjectSpec]:
        from render import procedural

        if self.objects_file is not None:
            entries = _read_objects_csv(self.objects_file, self.kind)
            _check_procedural_entries(self.objects_file, entries)
            return [_spec(entry) for entry in entries]
        names = procedural.CLASSES if self.class_names is None else self.class_names
        unknown = sorted(set(names) - set(procedural.CLASSES))
        if unknown:
            raise SourceError(
                f"unknown procedural classes {', '.join(unknown)}; "
                f"choose among {', '.join(procedural.CLASSES)}"
            )
        if not 1 <= self.per_class <= procedural.MAX_PER_CLASS:  # ids number instances with five digits
            raise SourceError(
                f"--per-class must be from 1 to {procedural.MAX_PER_CLASS}, got {self.per_class}"
            )
        keys = [
            (procedural.SYNSETS[name], procedural.object_id(name, index, self.seed))
            for name in sorted(set(names))
            for index in range(self.per_class)
        ]
        return [_spec(entry) for entry in _labelled_and_split(keys, self.kind, self.seed)]

    def classes(self, objects: list[ObjectSpec]) -> tuple[spec.Synset, ...]:
        from render import procedural

        return _classes_of(objects, names={synset: name for name, synset in procedural.SYNSETS.items()})

    def load(self, obj: ObjectSpec) -> MeshArrays:
        from render import procedural

        try:
            class_name, index, seed = procedural.parse_object_id(obj.object_id)
        except ValueError as error:
            raise MeshError(str(error)) from None
        return mesh_arrays_from_trimesh(procedural.make_mesh(class_name, index, seed))

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "classes": None if self.class_names is None else sorted(set(self.class_names)),
            "per_class": self.per_class,
            "seed": self.seed,
            "objects_file": _optional_str(self.objects_file),
        }


def _check_procedural_entries(path: Path, entries: list) -> None:
    """SourceError, before anything renders, for an objects CSV row of the procedural source whose synset
    is not its object's class's (the object would be labelled as another class). Ids that are not the
    library's fail as objects, in the failures file, as a missing ShapeNet model does."""
    from render import procedural

    for entry in entries:
        try:
            class_name, _, _ = procedural.parse_object_id(entry.object_id)
        except ValueError:
            continue
        if procedural.SYNSETS[class_name] != entry.synset:
            raise SourceError(
                f"{path}: {entry.object_id!r} is a {class_name} (synset {procedural.SYNSETS[class_name]}) "
                f"but its row gives synset {entry.synset}; correct the synset column"
            )


def source_from_options(
    shapenet_dir: Path | None = None,
    mesh_dir: Path | None = None,
    objects_file: Path | None = None,
    classes: tuple[str, ...] | None = None,
    per_class: int | None = None,
    seed: int = 0,
    up_axis: str = "z",
) -> ObjectSource:
    """The source the command-line options name: ShapeNet, a mesh folder, or the procedural library
    (`per_class` None: PROCEDURAL_PER_CLASS). `classes` and `per_class` choose procedural objects only."""
    if shapenet_dir is not None and mesh_dir is not None:
        raise SourceError("give either --shapenet-dir or --mesh-dir, not both")
    if (shapenet_dir is not None or mesh_dir is not None) and (classes is not None or per_class is not None):
        folder = "--shapenet-dir" if shapenet_dir is not None else "--mesh-dir"
        raise SourceError(
            f"--classes and --per-class choose procedural objects and do not apply to {folder}; to render "
            "some of its objects, list them in an --objects CSV"
        )
    if objects_file is not None and not Path(objects_file).is_file():
        raise SourceError(f"{objects_file}: no such file (given as --objects)")
    if classes is not None:
        classes = class_names(classes)
    if shapenet_dir is not None:
        return ShapeNetSource(Path(shapenet_dir), objects_file)
    if mesh_dir is not None:
        return MeshDirSource(Path(mesh_dir), objects_file, up_axis, seed)
    return ProceduralSource(
        classes, PROCEDURAL_PER_CLASS if per_class is None else per_class, seed, objects_file
    )


def model_library_problem(root: Path) -> str | None:
    """What is wrong with reading `root` as a rendered dataset when it is a ShapeNet-style folder of models
    (a taxonomy.json, as `3die objects` writes and ShapeNet unpacks into, and no dataset manifest or split
    files), with the command that renders it; None for any other folder."""
    dataset_files = (spec.MANIFEST_NAME, *map(spec.split_images_name, spec.SPLITS))
    if not (root / spec.TAXONOMY_NAME).is_file() or any((root / name).is_file() for name in dataset_files):
        return None
    return (
        f"a ShapeNet-style folder of models ({spec.TAXONOMY_NAME}), not a rendered dataset; render it into a "
        f"folder of its own (`3die render --shapenet-dir {root} --out DATA`)"
    )


def class_names(names: Iterable[str]) -> tuple[str, ...]:
    """The class names of a --classes option split at commas ("chair, mug," names chair and mug);
    SourceError when it names none (an empty --classes does not mean every class)."""
    names = tuple(name.strip() for name in names if name.strip())
    if not names:
        raise SourceError("--classes names no class; give class names separated by commas")
    return names


# --- helpers -------------------------------------------------------------------------------------------
def _is_broken_link(path: Path) -> bool:
    """A symbolic link whose target is missing, or a loop."""
    return path.is_symlink() and not path.exists()


def _broken_link_error(path: Path) -> str:
    return (
        f"{path}: a symbolic link to {os.readlink(path)}, which leads nowhere (missing or a loop); fix or "
        "remove the link"
    )


def _is_mesh_file(path: Path) -> bool:
    return path.suffix.lower() in MESH_EXTENSIONS


def _is_mesh_entry(path: Path) -> bool:
    """A mesh file of a class folder, or a broken link named like one (an object that fails to load,
    recorded in the failures file, rather than one left out unnoticed). Hidden files (".name", such as
    the "._name.obj" that macOS copies leave) are no objects."""
    hidden = path.name.startswith(".")
    return not hidden and _is_mesh_file(path) and (path.is_file() or _is_broken_link(path))


def _spec(entry, path: Path | None = None) -> ObjectSpec:
    """ObjectSpec of a render.manifest.ObjectEntry."""
    return ObjectSpec(entry.synset, entry.object_id, entry.label, entry.split, entry.source, path)


def _labelled_and_split(keys: list[tuple[str, str]], kind: str, seed: int) -> list:
    """ObjectEntries of (synset, object id) pairs: labels from the dataset's sorted synsets, class-stratified
    80/20 split (sorted by synset, then object id)."""
    from render import manifest

    labels = manifest.class_labels(synset for synset, _ in keys)
    entries = [manifest.ObjectEntry(s, o, labels[s], "train", kind) for s, o in keys]
    return manifest.stratified_split(entries, seed=seed)


def _read_objects_csv(path: Path, kind: str) -> list:
    """The entries of an objects CSV (render.manifest schema), which must all come from source `kind`."""
    from render import manifest

    if Path(path).suffix.lower() == ".npy":
        raise SourceError(
            f"{path}: an images .npy selects ShapeNet objects (with --shapenet-dir); for the {kind} source "
            f"give an objects CSV ({','.join(manifest.COLUMNS)})"
        )
    try:
        entries = manifest.read_objects_csv(path)
    except manifest.ManifestError as error:
        raise SourceError(str(error)) from None
    others = sorted({entry.source for entry in entries} - {kind})
    if others:
        hint = f"; to read these objects from it, write {kind} in the CSV's source column"
        raise SourceError(
            f"{path}: lists objects of source {', '.join(others)}, but this render reads {kind}"
            + (hint if kind != "procedural" else "")
        )
    if kind != "shapenet":
        check_class_labels(path, entries)
    return entries


def check_class_labels(path: Path, entries: list) -> None:
    """SourceError unless the labels of the entries' classes are 0..C-1, as dataset readers need them (a
    ShapeNet object keeps its synset's label among the 55 instead)."""
    labels = sorted({entry.label for entry in entries})
    if labels != list(range(len(labels))):
        raise SourceError(
            f"{path}: the labels of its {len(labels)} classes are {', '.join(map(str, labels))}; number "
            f"them 0..{len(labels) - 1} (e.g. by sorted synset, render.manifest.class_labels), as the "
            "dataset readers need"
        )


def _classes_of(objects: list[ObjectSpec], names: dict[str, str]) -> tuple[spec.Synset, ...]:
    """The (label, synset, name) triples of the objects, by label; a synset's name defaults to itself."""
    labelled = {(obj.label, obj.synset) for obj in objects}
    return tuple(spec.Synset(label, synset, names.get(synset, synset)) for label, synset in sorted(labelled))


def _listed(list_objects, *arguments):
    """`list_objects(*arguments)`, a folder listing; an unreadable folder is a SourceError naming it."""
    try:
        return list_objects(*arguments)
    except OSError as error:
        raise SourceError(
            f"{error.filename}: cannot list the objects ({error.strerror or error}); make it readable"
        ) from None


def _existing_folder(path: Path, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise SourceError(f"{path}: no such folder (given as {option})")
    return path


def _optional_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def read_images_npy(path: Path) -> list[tuple[str, str]]:
    """(synset, object id) pairs of a published-style object list: an images file of "/SYNSET/OBJECT_ID/"
    strings (the split files), or an (N, 2) array of (synset, object id) rows (the published generator's
    `--objects` file, all_objects.npy)."""
    try:
        entries = np.load(path, allow_pickle=False)
    except NPY_ERRORS as error:
        raise SourceError(f"{path}: not a NumPy array of '/SYNSET/OBJECT_ID/' strings ({error})") from None
    if entries.size == 0:  # an empty split (np.save of an empty list is float64)
        return []
    if entries.dtype.kind == "S":  # bytes: the published files are str, but a bytes array reads the same
        entries = np.char.decode(entries, "utf-8", errors="replace")
    if entries.dtype.kind != "U":
        raise SourceError(
            f"{path}: an array of {entries.dtype} values, not of strings; ids are text ('/SYNSET/OBJECT_ID/' "
            "or (SYNSET, OBJECT_ID) rows) and synset ids keep their leading zeros ('03001627')"
        )
    if entries.ndim == 2 and entries.shape[1] == 2:
        return [(str(synset), str(object_id)) for synset, object_id in entries]
    keys = []
    for entry in entries.reshape(-1):
        parts = str(entry).strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise SourceError(f"{path}: entry {entry!r} is not of the form '/SYNSET/OBJECT_ID/'")
        keys.append((parts[0], parts[1]))
    return keys


def _shapenet_folders(root: Path) -> list[tuple[str, str]]:
    """(synset, object id) of every object folder under the 55 synset folders, sorted."""
    keys = [
        (synset_dir.name, obj_dir.name)
        for synset_dir in sorted(root.iterdir())
        if synset_dir.is_dir() and synset_dir.name in spec.shapenet_synset_ids()
        for obj_dir in sorted(synset_dir.iterdir())
        if obj_dir.is_dir() and not obj_dir.name.startswith(".")
    ]
    if not keys:
        raise SourceError(
            f"{root}: no ShapeNetCore v2 synset folders (expected ROOT/SYNSET/OBJECT_ID/models/)"
        )
    return keys
