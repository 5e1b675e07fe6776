"""The Blender scene of 3DIEBench: the only module of the project that imports `bpy`.

One `Scene` per process owns all Blender state. It builds the floor, sun, spot light and camera once;
`set_object` replaces the object (and purges the previous one's orphan data); `apply_latent` poses the
object, colours the floor and places and colours the spot light for one view; `render` returns the
image as a true-RGB uint8 array.

Cycles keeps its scene data between renders (`use_persistent_data`): a view re-syncs only what the
latent changed. Settings that Cycles reads once (light tree, sampling pattern, denoiser, bounces) are
therefore set when the scene is built and never changed afterwards. Each render is written by Blender as
an uncompressed BMP into a folder in memory (/dev/shm where there is one) and read back, because Blender
offers no in-memory access to a finished render from Python; the view transform is applied on that
write, exactly as for any other file format.
"""

from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import errno
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector
from PIL import Image

from render import spec
from render.quality import Quality
from render.sources import MeshArrays, MeshError, ObjFile, normalised_surface

# Light and colour-management settings the published generator inherited from Blender 2.9x/3.x
# through BlenderProc (defaults that changed in Blender 4 and 5, so they are set explicitly).
LIGHT_SOFT_SIZE = 0.25  # radius of the spot lamp in metres: the soft shadow edge
SPOT_BLEND = 0.15
WORLD_GREY = 0.05  # dim uniform world light
VIEW_TRANSFORM = "Filmic"
RENDER_FILE = "view.bmp"  # the scene's render output: uncompressed, so writing and reading it is cheap
MEMORY_TMP = Path("/dev/shm")
SMOOTH_ANGLE = math.radians(30.0)  # edges sharper than this stay sharp on imported arrays
OBJECT_GREY = 0.8  # base colour of meshes that carry no colours
COLOUR_ATTRIBUTE = "Colour"  # the colour attribute of meshes built from arrays
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


@dataclass(frozen=True)
class RenderSettings:
    """What a Scene needs to know: image size in pixels, quality preset, device ("auto", "cpu", "gpu"),
    CPU threads (0 lets Cycles use every core), Cycles' sampling seed, and the worker's GPU slot: with
    several GPUs, the scene renders on GPU number slot % count alone (None: on every GPU)."""

    size: int
    quality: Quality
    device: str = "auto"
    threads: int = 0
    seed: int = 0
    gpu_slot: int | None = None


class Scene:
    """The 3DIEBench scene in this process's Blender; create at most one per process."""

    def __init__(self, settings: RenderSettings) -> None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.settings = settings
        self.scene = bpy.context.scene
        self._tmp = tempfile.TemporaryDirectory(
            prefix="3die-scene-", dir=memory_tmp_dir(render_file_bytes(settings.size))
        )
        self.device = _configure_cycles(self.scene, settings)
        self.floor_colour = _build_floor(self.scene)
        _build_world(self.scene)
        self.sun = _add_light(self.scene, "Sun", "SUN")
        self.sun.data.energy = spec.SUN_ENERGY
        self.sun.data.angle = spec.SUN_ANGLE
        self.spot = _add_light(self.scene, "Spot", "SPOT")
        self.spot.data.energy = spec.SPOT_ENERGY
        self.spot.data.spot_size = spec.SPOT_SIZE
        self.spot.data.spot_blend = SPOT_BLEND
        self.camera = _build_camera(self.scene)
        self.object: bpy.types.Object | None = None

    def set_quality(self, quality: Quality) -> None:
        """Render the next views with another preset (Cycles rebuilds its scene data on the next render)."""
        apply_quality(self.scene.cycles, quality)
        use_denoiser(self.scene.cycles, self.device)
        self.scene.render.use_persistent_data = False  # frees Cycles' kept data...
        self.scene.render.use_persistent_data = True  # ...and keeps the next render's again
        self.settings = dataclasses.replace(self.settings, quality=quality)

    # --- object ----------------------------------------------------------------------------------
    def set_object(self, mesh: MeshArrays | ObjFile) -> list[str]:
        """Replace the scene's object by `mesh`, origin at its bounding-box centre, placed at the origin.

        Returns warnings about the mesh (those of an ObjFile's scan, `sources.scan_obj`: a missing material
        library, which leaves the importer's grey; missing textures, which fall back to the material's
        colour);
        raises MeshError when the mesh yields no faces, or nothing visible (`sources.normalised_surface`).
        """
        self.clear_object()
        if isinstance(mesh, ObjFile):
            obj = _import_obj(mesh.path)
            warnings = [*mesh.warnings, *drop_missing_textures(obj)]
            origin = f"{mesh.path}: "
        else:
            obj, warnings, origin = _object_from_arrays(mesh), list(mesh.warnings), ""
        self.object = obj
        try:
            if len(obj.data.polygons) == 0:
                raise MeshError("the mesh has no faces")
            normalised_surface(*mesh_triangles(obj.data))
        except MeshError as error:
            self.clear_object()
            raise MeshError(f"{origin}{error}") from None
        _centre_origin(obj)
        obj.rotation_mode = "XYZ"
        return warnings

    def clear_object(self) -> None:
        """Remove the current object and purge the meshes, materials and images it leaves behind."""
        if self.object is not None:
            bpy.data.objects.remove(self.object, do_unlink=True)
            self.object = None
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)

    # --- one view ----------------------------------------------------------------------------------
    def apply_latent(self, latent: np.ndarray) -> None:
        """Pose the object, colour the floor, place and colour the spot light from a (LATENT_DIM,) latent."""
        if self.object is None:
            raise RuntimeError("set_object must come before apply_latent")
        self.object.rotation_euler = Euler([float(a) for a in latent[spec.ROTATION]], "XYZ")
        self.floor_colour.default_value = (
            *hsv_to_rgb(latent[spec.FLOOR_HUE], spec.FLOOR_SATURATION, spec.FLOOR_VALUE),
            1.0,
        )
        spot_location = spec.spherical_to_cartesian(
            spec.SPOT_RADIUS, float(latent[spec.SPOT_THETA]), float(latent[spec.SPOT_PHI])
        )
        self.spot.matrix_world = look_at_matrix(spot_location)
        self.spot.data.color = hsv_to_rgb(latent[spec.SPOT_HUE], spec.SPOT_SATURATION, spec.SPOT_VALUE)

    def render(self) -> np.ndarray:
        """Render the current view: (size, size, 3) uint8, true RGB."""
        path = Path(self._tmp.name) / RENDER_FILE
        self.scene.render.filepath = str(path)
        try:
            with _quiet_stdout():
                bpy.ops.render.render(write_still=True)
        except RuntimeError as error:  # Blender says "cannot save", not why: a full (in-memory) folder
            if "cannot save" not in str(error):
                raise
            raise OSError(
                errno.ENOSPC, "Blender could not write its render here (no space?)", str(path)
            ) from None
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:  # cut short: a file size limit, a full folder
            raise OSError(
                errno.EIO, f"Blender's render could not be read back ({error})", str(path)
            ) from None

    # --- geometry queries (used by tests and checks) ------------------------------------------------
    def object_matrix_world(self) -> np.ndarray:
        """The object's 4x4 world matrix after the last applied latent."""
        bpy.context.view_layer.update()
        return np.array(self.object.matrix_world)

    def object_vertices_world(self) -> np.ndarray:
        """World positions of the object's vertices, shape (N, 3)."""
        local = np.array([v.co for v in self.object.data.vertices])
        matrix = self.object_matrix_world()
        return local @ matrix[:3, :3].T + matrix[:3, 3]

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (column, row from the top-left corner) of world points (N, 3) -> (N, 2)."""
        from bpy_extras.object_utils import world_to_camera_view

        bpy.context.view_layer.update()
        size = self.settings.size
        ndc = np.array([world_to_camera_view(self.scene, self.camera, Vector(p))[:2] for p in points])
        return np.stack([ndc[:, 0] * size, (1.0 - ndc[:, 1]) * size], axis=1)

    def close(self) -> None:
        """Drop the object and the scene's temporary folder."""
        self.clear_object()
        self._tmp.cleanup()


# --- pure helpers ----------------------------------------------------------------------------------
def memory_tmp_dir(needed: int = 0) -> str | None:
    """/dev/shm when it is a writable folder (files there live in memory) with room for a few files of
    `needed` bytes (a container's /dev/shm may hold only 64 MB, shared by every worker), else the system
    default."""
    if not (MEMORY_TMP.is_dir() and os.access(MEMORY_TMP, os.W_OK)):
        return None
    try:
        free = shutil.disk_usage(MEMORY_TMP).free
    except OSError:
        return None
    return str(MEMORY_TMP) if free >= 8 * needed else None


def render_file_bytes(size: int) -> int:
    """Bytes of one render written as RENDER_FILE (24-bit BMP: rows padded to 4 bytes, 54-byte header)."""
    return 54 + size * ((3 * size + 3) // 4 * 4)


def hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    """HSV (each in [0, 1]) -> RGB in [0, 1], used as linear colour like the published scene."""
    return colorsys.hsv_to_rgb(float(hue), saturation, value)


def look_at_matrix(location: tuple[float, float, float], target=(0.0, 0.0, 0.0)) -> Matrix:
    """World matrix of a camera or lamp at `location` whose -Z axis points at `target` and whose +Y axis
    (image up) leans towards world +Z."""
    forward = Vector(target) - Vector(location)
    rotation = forward.to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return Matrix.Translation(Vector(location)) @ rotation


# --- scene construction ------------------------------------------------------------------------------
def _configure_cycles(scene, settings: RenderSettings) -> str:
    """Cycles, resolution, quality, colour management and device; returns "CPU" or the GPU backend used."""
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = scene.render.resolution_y = settings.size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "BMP"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.use_persistent_data = True
    scene.render.use_compositing = False  # no compositor nodes, no sequencer strips: skip both stages
    scene.render.use_sequencer = False
    scene.render.film_transparent = False
    scene.view_settings.view_transform = VIEW_TRANSFORM
    scene.view_settings.look = "None"
    apply_quality(scene.cycles, settings.quality)
    scene.cycles.seed = settings.seed
    if settings.threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = settings.threads
    device = _select_device(settings.device, settings.gpu_slot)
    scene.cycles.device = "CPU" if device == "CPU" else "GPU"
    use_denoiser(scene.cycles, device)
    return device


def use_denoiser(cycles, device: str) -> None:
    """Denoise with Open Image Denoise on every device, on the GPU when rendering on one.

    The quality presets' prefilter, network quality and guiding passes are Open Image Denoise settings,
    their PSNR was measured with it, and it is BlenderProc's default (the `published` preset). Cycles
    would otherwise pick OptiX's denoiser on NVIDIA cards, which ignores those settings.
    """
    cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.denoising_use_gpu = device != "CPU"


def apply_quality(cycles, quality: Quality) -> None:
    """Copy a quality preset onto Cycles' scene settings (`scene.cycles`); the denoiser itself is chosen
    with the device."""
    cycles.samples = quality.samples
    cycles.use_adaptive_sampling = quality.adaptive_threshold > 0
    if quality.adaptive_threshold > 0:
        cycles.adaptive_threshold = quality.adaptive_threshold
        cycles.adaptive_min_samples = quality.adaptive_min_samples
    cycles.use_denoising = quality.denoise
    cycles.denoising_prefilter = quality.denoise_prefilter
    cycles.denoising_quality = quality.denoise_quality
    cycles.denoising_input_passes = quality.denoise_passes
    cycles.sampling_pattern = quality.sampling_pattern
    cycles.use_light_tree = quality.light_tree
    cycles.max_bounces = quality.max_bounces
    cycles.diffuse_bounces = quality.diffuse_bounces
    cycles.glossy_bounces = quality.glossy_bounces
    cycles.transmission_bounces = quality.transmission_bounces
    cycles.transparent_max_bounces = quality.transparent_max_bounces
    cycles.caustics_reflective = cycles.caustics_refractive = quality.caustics


def _select_device(request: str, gpu_slot: int | None = None) -> str:
    """ "CPU" or the first GPU backend with a device, whose GPUs `use_gpu_slot` enables; request is
    "auto", "cpu" or "gpu"."""
    if request not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be auto, cpu or gpu, got {request!r}")
    if request == "cpu":
        return "CPU"
    preferences = bpy.context.preferences.addons["cycles"].preferences
    with _output_captured() as said:  # Cycles logs a warning for every GPU library it cannot load
        for backend in GPU_BACKENDS:
            try:
                devices = preferences.get_devices_for_type(backend)
            except (TypeError, ValueError):
                continue
            if any(d.type != "CPU" for d in devices):
                preferences.compute_device_type = backend
                use_gpu_slot(devices, gpu_slot)
                return backend
    if request == "gpu":
        why = _log_text(said)
        raise RuntimeError(
            "--device gpu: Cycles found no OptiX, CUDA, HIP, oneAPI or Metal device"
            + (f" ({why})" if why else "")
        )
    return "CPU"


@contextlib.contextmanager
def _output_captured():
    """Redirect this process's file descriptors 1 and 2 (where Blender's C code logs) into a temporary
    file for the block; yields a list that holds the lines written there once the block ends."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile("w+", errors="replace") as captured:
        os.dup2(captured.fileno(), 1)
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            for descriptor, copy in enumerate(saved, start=1):
                os.dup2(copy, descriptor)
                os.close(copy)
            captured.seek(0)
            lines += captured.read().splitlines()


def _log_text(lines: list[str]) -> str:
    """Blender's captured log as one line: its warnings and errors (all its lines when none says so),
    each without its time and module prefix."""
    texts = [line.split("|")[-1].strip() for line in lines if line.strip()]
    problems = [text for text in texts if any(word in text.lower() for word in ("error", "warn", "fail"))]
    return "; ".join(problems or texts)


def use_gpu_slot(devices, slot: int | None) -> None:
    """Enable the GPUs among Cycles' `devices` (objects with `type` and `use`) that a worker renders on:
    every one when `slot` is None, else only GPU number slot % count, so that the workers of one node
    share its GPUs instead of each splitting every frame across all of them. CPUs are never enabled."""
    gpus = [device for device in devices if device.type != "CPU"]
    chosen = gpus if slot is None else [gpus[slot % len(gpus)]]
    for device in devices:
        device.use = any(device is gpu for gpu in chosen)


def _build_floor(scene) -> bpy.types.NodeSocket:
    """The floor plane and its diffuse material; returns the shader's colour input (set per view)."""
    half = spec.FLOOR_SIZE / 2
    mesh = bpy.data.meshes.new("Floor")
    mesh.from_pydata(
        [(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)], [], [(0, 1, 2, 3)]
    )
    floor = bpy.data.objects.new("Floor", mesh)
    floor.location = (0.0, 0.0, spec.FLOOR_Z)
    scene.collection.objects.link(floor)
    material = bpy.data.materials.new("Floor")
    nodes = material.node_tree.nodes
    nodes.clear()
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(diffuse.outputs["BSDF"], output.inputs["Surface"])
    mesh.materials.append(material)
    return diffuse.inputs["Color"]


def _build_world(scene) -> None:
    world = bpy.data.worlds.new("World")
    world.color = (WORLD_GREY,) * 3
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (WORLD_GREY, WORLD_GREY, WORLD_GREY, 1.0)
    background.inputs["Strength"].default_value = 1.0
    scene.world = world


def _add_light(scene, name: str, kind: str) -> bpy.types.Object:
    data = bpy.data.lights.new(name, kind)
    data.shadow_soft_size = LIGHT_SOFT_SIZE
    light = bpy.data.objects.new(name, data)
    scene.collection.objects.link(light)
    return light


def _build_camera(scene) -> bpy.types.Object:
    """The camera at (distance, theta, phi) looking at the origin, Blender's default lens."""
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    location = spec.spherical_to_cartesian(spec.CAMERA_DISTANCE, spec.CAMERA_THETA, spec.CAMERA_PHI)
    camera.matrix_world = look_at_matrix(location)
    scene.camera = camera
    return camera


# --- objects ------------------------------------------------------------------------------------------
def _import_obj(path: Path) -> bpy.types.Object:
    """Import a Wavefront OBJ (Y up, turned Z up like the published loader) as one object, materials fixed."""
    before = set(bpy.data.objects)
    try:  # the importer's log (missing folders, materials) would land in the progress bars
        with _output_captured() as said:
            result = bpy.ops.wm.obj_import(filepath=str(path), forward_axis="NEGATIVE_Z", up_axis="Y")
    except RuntimeError as error:
        raise MeshError(f"{path}: Blender's OBJ importer failed ({error})") from None
    imported = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    if "FINISHED" not in result or not imported:
        for obj in (o for o in bpy.data.objects if o not in before):
            bpy.data.objects.remove(obj, do_unlink=True)
        log = _log_text(said)
        raise MeshError(f"{path}: Blender's OBJ importer found no mesh" + (f" ({log})" if log else ""))
    obj = _join(imported)
    _bake_transform(obj)
    for material in obj.data.materials:
        if material is not None:
            invert_alpha_textures(material)
    return obj


def drop_missing_textures(obj) -> list[str]:
    """Remove image texture nodes whose file is missing or unreadable (Cycles would paint them magenta),
    so their shader input falls back to the material's own colour; returns one warning per image."""
    warnings = []
    for material in {m for m in obj.data.materials if m is not None and m.node_tree is not None}:
        for node in [n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"]:
            image = node.image
            path = bpy.path.abspath(image.filepath) if image is not None else ""
            with _output_captured():  # reading the size loads the image, whose errors Blender logs
                readable = image is not None and os.path.isfile(path) and image.size[0] > 0
            if readable:
                continue
            warnings.append(f"material {material.name}: texture {path or '(none)'} is missing or unreadable")
            material.node_tree.nodes.remove(node)
    return sorted(warnings)


def mesh_triangles(data) -> tuple[np.ndarray, np.ndarray]:
    """A Blender mesh's vertices (N, 3) float64 and its triangulated faces (M, 3) int."""
    vertices = np.empty(len(data.vertices) * 3, dtype=np.float32)
    data.vertices.foreach_get("co", vertices)
    data.calc_loop_triangles()
    triangles = np.empty(len(data.loop_triangles) * 3, dtype=np.int32)
    data.loop_triangles.foreach_get("vertices", triangles)
    return vertices.reshape(-1, 3).astype(np.float64), triangles.reshape(-1, 3)


def _join(objects: list) -> bpy.types.Object:
    """One object from several imported mesh objects (their world transforms baked in)."""
    if len(objects) == 1:
        return objects[0]
    with bpy.context.temp_override(
        active_object=objects[0], selected_editable_objects=objects, selected_objects=objects
    ):
        bpy.ops.object.join()
    return objects[0]


def _bake_transform(obj) -> None:
    """Move the object's transform into its mesh so that rotation (0, 0, 0) shows it as imported."""
    obj.data.transform(obj.matrix_basis)
    obj.matrix_basis = Matrix.Identity(4)


def invert_alpha_textures(material) -> None:
    """Insert an Invert node between image textures and the Principled BSDF's Alpha input.

    ShapeNet's materials store transparency maps inverted; the published loader (BlenderProc's ShapeNet
    loader) applies the same fix to every material with more than one image texture.
    """
    if material.node_tree is None:
        return
    nodes, links = material.node_tree.nodes, material.node_tree.links
    textures = [n for n in nodes if n.bl_idname == "ShaderNodeTexImage"]
    shaders = [n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"]
    if len(textures) < 2 or len(shaders) != 1:
        return
    alpha = shaders[0].inputs["Alpha"]
    for link in list(alpha.links):
        if link.from_node.bl_idname != "ShaderNodeTexImage":
            continue
        invert = nodes.new("ShaderNodeInvert")
        invert.inputs["Fac"].default_value = 1.0
        links.new(link.from_node.outputs["Color"], invert.inputs["Color"])
        links.remove(link)
        links.new(invert.outputs["Color"], alpha)


def _object_from_arrays(mesh: MeshArrays) -> bpy.types.Object:
    """A Blender object straight from vertex and face arrays (Z up), smooth-shaded below SMOOTH_ANGLE."""
    data = bpy.data.meshes.new("Object")
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int32)
    data.vertices.add(len(vertices))
    data.vertices.foreach_set("co", vertices.ravel())
    data.loops.add(faces.size)
    data.loops.foreach_set("vertex_index", faces.ravel())
    data.polygons.add(len(faces))
    data.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    data.update(calc_edges=True)
    if mesh.colors is not None:  # before validate, which drops degenerate faces with their corner colours
        colours = data.color_attributes.new(COLOUR_ATTRIBUTE, "BYTE_COLOR", mesh.color_domain)
        colours.data.foreach_set("color_srgb", np.asarray(mesh.colors, dtype=np.float32).ravel())
    if data.validate(verbose=False):
        data.update(calc_edges=True)
    data.shade_smooth()
    data.set_sharp_from_angle(angle=SMOOTH_ANGLE)
    data.materials.append(_object_material(mesh))
    obj = bpy.data.objects.new("Object", data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _object_material(mesh: MeshArrays) -> bpy.types.Material:
    """A Principled material: the mesh's colours (its COLOUR_ATTRIBUTE) when it has some, plain light grey
    otherwise."""
    material = bpy.data.materials.new("Object")
    shader = material.node_tree.nodes.get("Principled BSDF")
    shader.inputs["Roughness"].default_value = 0.5
    if mesh.colors is None:
        shader.inputs["Base Color"].default_value = (OBJECT_GREY, OBJECT_GREY, OBJECT_GREY, 1.0)
        return material
    attribute = material.node_tree.nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = COLOUR_ATTRIBUTE
    material.node_tree.links.new(attribute.outputs["Color"], shader.inputs["Base Color"])
    return material


def _centre_origin(obj) -> None:
    """Translate the mesh so its bounding-box centre is the object's origin, and place it at (0, 0, 0).

    The box comes from the vertices themselves: `obj.bound_box` is cached, and after `_bake_transform` it
    still describes the mesh before the Y-up to Z-up turn."""
    coordinates = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", coordinates)
    corners = coordinates.reshape(-1, 3).astype(np.float64)
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
    obj.data.transform(Matrix.Translation(Vector(-centre)))
    obj.location = (0.0, 0.0, 0.0)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Blender's per-render and per-import chatter on the process's stdout (file descriptor 1)."""
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
