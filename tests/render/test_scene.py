"""The Blender scene against geometry and colour: rotation convention, camera projection, floor and spot
colours, object import and clean-up. All renders are tiny (see conftest.TEST_SIZE)."""

import colorsys
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from render import spec
from render.quality import QUALITY_PRESETS
from render.sources import MeshArrays, MeshError, ObjFile, mesh_arrays_from_trimesh

pytestmark = pytest.mark.slow

ROTATIONS = ([0.0, 0.0, 0.0], [0.4, -0.9, 1.2], [-1.2, 0.5, -0.3], [1.0, -0.6, 0.9])


def latent(rotation=(0.0, 0.0, 0.0), floor_hue=0.5, spot_theta=0.2, spot_phi=1.0, spot_hue=0.5):
    return np.array([*rotation, floor_hue, spot_theta, spot_phi, spot_hue])


@pytest.fixture(scope="module")
def marker_object():
    """A grey bar with a red cube at its +X end; returns (MeshArrays, marker centre in object coordinates)."""
    bar = trimesh.creation.box((0.6, 0.12, 0.12))
    bar.visual.face_colors = [128, 128, 128, 255]
    marker = trimesh.creation.box((0.12, 0.12, 0.12))
    marker.apply_translation((0.36, 0.0, 0.0))
    marker.visual.face_colors = [255, 0, 0, 255]
    arrays = mesh_arrays_from_trimesh(trimesh.util.concatenate([bar, marker]))
    centre = arrays.vertices[len(bar.vertices) :].mean(axis=0)
    return arrays, centre


def pinhole_pixel(point: np.ndarray, size: int) -> np.ndarray:
    """(column, row) of a world point through the published camera, computed without Blender:
    camera at (2.5, pi/4, pi/2) looking at the origin with world Z up, Blender's default 50 mm lens on a
    36 mm sensor."""
    camera = np.array(spec.spherical_to_cartesian(spec.CAMERA_DISTANCE, spec.CAMERA_THETA, spec.CAMERA_PHI))
    forward = -camera / np.linalg.norm(camera)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    offset = point - camera
    focal = 50.0 / 36.0 * size
    depth = offset @ forward
    return np.array([size / 2 + focal * (offset @ right) / depth, size / 2 - focal * (offset @ up) / depth])


def red_centroid(image: np.ndarray) -> np.ndarray:
    pixels = image.astype(int)
    rows, cols = np.nonzero(pixels[..., 0] - np.maximum(pixels[..., 1], pixels[..., 2]) > 60)
    assert len(rows) >= 5, "the red marker is not visible"
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5])


def test_rotation_is_scipy_extrinsic_xyz(scene, marker_object):
    arrays, _ = marker_object
    scene.set_object(arrays)
    for rotation in ROTATIONS:
        scene.apply_latent(latent(rotation))
        matrix = scene.object_matrix_world()
        expected = Rotation.from_euler("xyz", rotation)
        np.testing.assert_allclose(matrix[:3, :3], expected.as_matrix(), atol=1e-6)
        np.testing.assert_allclose(matrix[:3, 3], 0.0, atol=1e-9)
        world = scene.object_vertices_world()
        np.testing.assert_allclose(world, expected.apply(arrays.vertices), atol=1e-5)
        assert scene.object.rotation_mode == "XYZ"


def test_rendered_marker_lands_where_scipy_puts_it(scene, marker_object):
    arrays, centre = marker_object
    scene.set_object(arrays)
    size = scene.settings.size
    for rotation in ROTATIONS:
        scene.apply_latent(latent(rotation))
        seen = red_centroid(scene.render())
        expected = pinhole_pixel(Rotation.from_euler("xyz", rotation).apply(centre), size)
        intrinsic = pinhole_pixel(Rotation.from_euler("XYZ", rotation).apply(centre), size)
        error = np.linalg.norm(seen - expected)
        assert error < 0.04 * size, (rotation, seen, expected)
        if not np.allclose(rotation, 0):
            # the render tells the conventions apart: the intrinsic reading is clearly farther off
            assert np.linalg.norm(seen - intrinsic) > error + 2.0, (rotation, seen, intrinsic)
        world = Rotation.from_euler("xyz", rotation).apply(centre)
        np.testing.assert_allclose(scene.project(world[None])[0], expected, atol=1e-3)


def corner_hue(image: np.ndarray) -> tuple[float, float]:
    """Hue and saturation of the mean colour of the two top corners (far floor, outside the spot pool)."""
    corners = np.concatenate([image[:6, :6].reshape(-1, 3), image[:6, -6:].reshape(-1, 3)]) / 255.0
    hue, saturation, _ = colorsys.rgb_to_hsv(*corners.mean(axis=0))
    return hue, saturation


def test_floor_colour_follows_the_latent_hue(scene):
    scene.set_object(mesh_arrays_from_trimesh(trimesh.creation.icosphere(subdivisions=1)))
    for hue in (0.03, 0.2, 0.4, 0.6, 0.8, 0.95):
        scene.apply_latent(latent(floor_hue=hue, spot_hue=(hue + 0.5) % 1))
        seen, saturation = corner_hue(scene.render())
        assert abs((seen - hue + 0.5) % 1.0 - 0.5) < 0.04, (hue, seen)
        assert saturation > 0.15, "the floor renders grey: its colour did not reach the shader"


def test_spot_light_colour_and_position(scene):
    scene.set_object(mesh_arrays_from_trimesh(trimesh.creation.icosphere(subdivisions=1)))
    size = scene.settings.size
    # the spot at theta=0 shines straight down: its pool is centred under the origin (where the object's
    # shadow falls), so look at the floor 0.6 to the side, inside the pool
    column, row = np.round(pinhole_pixel(np.array([0.6, 0.0, spec.FLOOR_Z]), size)).astype(int)
    pools = {}
    for spot_hue in (0.0, 1 / 3):
        scene.apply_latent(latent(floor_hue=0.0, spot_theta=0.0, spot_hue=spot_hue))
        pools[spot_hue] = (
            scene.render()[row - 2 : row + 3, column - 2 : column + 3].reshape(-1, 3).mean(axis=0)
        )
    red_light, green_light = pools[0.0], pools[1 / 3]
    assert red_light[0] - red_light[1] > green_light[0] - green_light[1] + 30
    # theta=pi/4: the spot at azimuth 0 (over world +X) lights the floor on the -X side, which this camera
    # shows on the right; at azimuth pi the pool moves to the left
    for phi, side in ((0.0, 1), (math.pi, -1)):
        scene.apply_latent(latent(spot_theta=math.pi / 4, spot_phi=phi))
        bottom = scene.render().astype(float).sum(axis=2)[size // 2 :]
        right_minus_left = bottom[:, size // 2 :].mean() - bottom[:, : size // 2].mean()
        assert side * right_minus_left > 8, (phi, right_minus_left)


def test_mesh_without_faces_is_refused_and_the_scene_stays_usable(scene, marker_object):
    empty = MeshArrays(np.zeros((3, 3)), np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(MeshError, match="no faces"):
        scene.set_object(empty)
    assert scene.object is None
    scene.set_object(marker_object[0])
    scene.apply_latent(latent())
    assert scene.render().shape == (scene.settings.size, scene.settings.size, 3)


def test_face_colours_stay_on_their_faces_when_a_degenerate_face_is_dropped(scene):
    box = trimesh.creation.box()
    faces = np.vstack([box.faces[:2], [[0, 0, 1]], box.faces[2:]])  # face 2 is degenerate
    reds = np.arange(len(faces)) * 15
    colours = np.stack([reds, np.zeros_like(reds), np.zeros_like(reds), np.full_like(reds, 255)], axis=1)
    arrays = MeshArrays(np.asarray(box.vertices), faces, np.repeat(colours / 255.0, 3, axis=0), "CORNER")
    scene.set_object(arrays)
    data = scene.object.data
    attribute = data.color_attributes["Colour"]
    kept = [round(attribute.data[polygon.loop_start].color_srgb[0] * 255) for polygon in data.polygons]
    assert kept == [r for face, r in enumerate(reds) if face != 2]


def test_objects_leave_no_orphan_data(scene, marker_object):
    import bpy

    scene.set_object(marker_object[0])
    counts = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images))
    for _ in range(3):
        scene.set_object(mesh_arrays_from_trimesh(trimesh.creation.icosphere(subdivisions=1)))
        scene.set_object(marker_object[0])
    assert (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images)) == counts


def write_shapenet_like_object(folder: Path, offset=(0.0, 0.0, 0.0)) -> Path:
    """A Y-up OBJ, tall along Y, centred at `offset`, with one textured material whose alpha map is an image
    and one material whose texture file is missing, in ShapeNetCore v2's layout (models/ and ../images/)."""
    (folder / "models").mkdir(parents=True)
    (folder / "images").mkdir()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(folder / "images" / "texture0.png")
    Image.new("RGB", (4, 4), (0, 0, 0)).save(folder / "images" / "alpha0.png")
    (folder / "models" / "model_normalized.mtl").write_text(
        "newmtl body\nKd 0.5 0.5 0.5\nmap_Kd ../images/texture0.png\nmap_d ../images/alpha0.png\n"
        "newmtl top\nKd 0.8 0.8 0.8\nmap_Kd ../images/missing.jpg\n"
    )
    box = trimesh.creation.box((0.2, 0.8, 0.3))
    box.apply_translation(offset)
    faces = box.faces + 1
    lines = [
        "mtllib model_normalized.mtl",
        *(f"v {x} {y} {z}" for x, y, z in box.vertices),
        "vt 0 0",
        "vt 1 0",
    ]
    lines += ["vt 1 1", "usemtl body", *(f"f {a}/1 {b}/2 {c}/3" for a, b, c in faces[:6])]
    lines += ["usemtl top", *(f"f {a}/1 {b}/2 {c}/3" for a, b, c in faces[6:])]
    path = folder / "models" / "model_normalized.obj"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shapenet_obj_is_upright_with_fixed_materials(scene, tmp_path):
    path = write_shapenet_like_object(tmp_path / "02691156" / "obj1")
    warnings = scene.set_object(ObjFile(path))
    assert len(warnings) == 1 and "missing.jpg" in warnings[0]
    scene.apply_latent(latent())
    extent = np.ptp(scene.object_vertices_world(), axis=0)
    np.testing.assert_allclose(extent, [0.2, 0.3, 0.8], atol=1e-5)  # Y up turned Z up
    materials = {m.name: m for m in scene.object.data.materials}
    links = [(link.from_node.bl_idname, link.to_socket.name) for link in materials["body"].node_tree.links]
    assert ("ShaderNodeInvert", "Alpha") in links and ("ShaderNodeTexImage", "Alpha") not in links
    assert not [n for n in materials["top"].node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"]
    image = scene.render().astype(int)
    magenta = (image[..., 0] > 150) & (image[..., 2] > 150) & (image[..., 1] < 80)
    assert not magenta.any(), "a missing texture rendered magenta"


def test_an_off_centre_obj_turns_about_its_bounding_box_centre(scene, tmp_path):
    """The origin is the centre of the box of the Z-up mesh: the box of the mesh as imported (Y up) put it
    off the origin, and every rotation moved the object across the frame."""
    path = write_shapenet_like_object(tmp_path / "02691156" / "obj2", offset=(0.15, 0.4, -0.25))
    scene.set_object(ObjFile(path))
    for rotation in ((0.0, 0.0, 0.0), (1.2, -0.7, 0.4)):
        scene.apply_latent(latent(rotation))
        world = scene.object_vertices_world()
        np.testing.assert_allclose((world.min(axis=0) + world.max(axis=0)) / 2, 0.0, atol=1e-5)
    scene.apply_latent(latent())
    np.testing.assert_allclose(np.ptp(scene.object_vertices_world(), axis=0), [0.2, 0.3, 0.8], atol=1e-5)


def test_importing_logs_nothing_and_an_unreadable_obj_says_what_blender_said(scene, tmp_path, capfd):
    """Blender's importer and image loader log to file descriptors 1 and 2, which would land in the
    progress bars; the problems they log come back as warnings or in the MeshError instead."""
    path = write_shapenet_like_object(tmp_path / "02691156" / "obj1")
    (tmp_path / "02691156" / "obj1" / "images" / "texture0.png").write_bytes(b"not an image at all")
    capfd.readouterr()
    warnings = scene.set_object(ObjFile(path))
    assert capfd.readouterr() == ("", "")
    assert [w.split(": texture ")[0] for w in warnings] == ["material body", "material top"]
    garbage = tmp_path / "garbage.obj"
    garbage.write_text("this is not an obj\n")
    said = r"garbage\.obj: Blender's OBJ importer found no mesh \(.*: 'this is not an obj'\)$"
    with pytest.raises(MeshError, match=said):
        scene.set_object(ObjFile(garbage))
    assert capfd.readouterr() == ("", "")


def test_shapenet_layout_export_imports_as_the_procedural_mesh(scene, tmp_path):
    from render import procedural
    from render.procedural import export

    export.export_library(tmp_path, ["chair"], per_class=1, seed=0)
    path = export.model_path(tmp_path, procedural.SYNSETS["chair"], procedural.object_id("chair", 0, 0))
    scene.set_object(ObjFile(path))
    scene.apply_latent(latent())
    imported = np.unique(np.round(scene.object_vertices_world(), 5), axis=0)
    direct = np.unique(np.round(procedural.make_mesh("chair", 0, 0).vertices, 5), axis=0)
    np.testing.assert_allclose(imported, direct, atol=2e-5)


def test_every_preset_reaches_cycles_settings(scene):
    import bpy

    from render.scene import apply_quality

    probe = bpy.data.scenes.new("quality-probe")  # beside the test scene, which stays as it is
    try:
        probe.render.engine = "CYCLES"
        for name, quality in QUALITY_PRESETS.items():
            apply_quality(probe.cycles, quality)
            cycles = probe.cycles
            assert cycles.samples == quality.samples, name
            assert cycles.use_adaptive_sampling == (quality.adaptive_threshold > 0), name
            if quality.adaptive_threshold > 0:
                assert cycles.adaptive_threshold == pytest.approx(quality.adaptive_threshold), name
            assert cycles.use_denoising == quality.denoise, name
            assert (cycles.denoising_prefilter, cycles.denoising_quality, cycles.denoising_input_passes) == (
                quality.denoise_prefilter,
                quality.denoise_quality,
                quality.denoise_passes,
            ), name
            assert (cycles.sampling_pattern, cycles.use_light_tree) == (
                quality.sampling_pattern,
                quality.light_tree,
            ), name
            assert (cycles.max_bounces, cycles.diffuse_bounces, cycles.glossy_bounces) == (
                quality.max_bounces,
                quality.diffuse_bounces,
                quality.glossy_bounces,
            ), name
            assert cycles.caustics_reflective == cycles.caustics_refractive == quality.caustics, name
    finally:
        bpy.data.scenes.remove(probe)


def high_frequency(image: np.ndarray) -> float:
    """Mean absolute difference between horizontally adjacent pixels of the bottom half (floor and
    object): large for sampling noise, small for a denoised image."""
    bottom = image[image.shape[0] // 2 :].astype(float)
    return float(np.abs(np.diff(bottom, axis=1)).mean())


def test_denoiser_setting_reaches_the_render_and_set_quality_switches_back(scene):
    original = scene.settings.quality  # the test scene's: few samples, no denoiser
    scene.set_object(mesh_arrays_from_trimesh(trimesh.creation.icosphere(subdivisions=2)))
    scene.apply_latent(latent(spot_theta=0.3))
    noisy = scene.render()
    try:
        scene.set_quality(replace(original, denoise=True, denoise_prefilter="NONE"))
        cycles = scene.scene.cycles
        assert cycles.use_denoising and cycles.denoiser == "OPENIMAGEDENOISE"
        denoised = scene.render()
    finally:
        scene.set_quality(original)
    assert not scene.scene.cycles.use_denoising and scene.settings.quality == original
    assert high_frequency(denoised) < 0.5 * high_frequency(noisy)
    np.testing.assert_array_equal(scene.render(), noisy)  # back to the same settings, the same pixels


@pytest.mark.parametrize("device", ["CPU", "OPTIX", "CUDA", "HIP"])
def test_every_device_denoises_with_open_image_denoise_on_the_device_that_renders(scene, device):
    import bpy

    from render.scene import use_denoiser

    probe = bpy.data.scenes.new("denoiser-probe")
    try:
        probe.render.engine = "CYCLES"
        use_denoiser(probe.cycles, device)
        # OptiX's denoiser would ignore the presets' prefilter and quality, which were measured with OIDN
        assert probe.cycles.denoiser == "OPENIMAGEDENOISE"
        assert probe.cycles.denoising_use_gpu == (device != "CPU")
    finally:
        bpy.data.scenes.remove(probe)


def test_each_worker_renders_on_one_gpu_of_a_node_with_several():
    from types import SimpleNamespace

    from render.scene import use_gpu_slot

    def devices():
        return [SimpleNamespace(type=kind, use=False) for kind in ("OPTIX", "OPTIX", "OPTIX", "CPU")]

    for slot, gpu in ((0, 0), (1, 1), (2, 2), (3, 0), (7, 1)):  # recycled workers count on
        found = devices()
        use_gpu_slot(found, slot)
        assert [device.use for device in found] == [index == gpu for index in range(4)], slot
    everything = devices()
    use_gpu_slot(everything, None)
    assert [device.use for device in everything] == [True, True, True, False]


def test_looking_for_gpus_logs_nothing_and_a_missing_one_says_why(capfd):
    """Cycles logs a warning for each GPU library it cannot load; `--device auto` keeps them off the
    terminal, and `--device gpu` without a GPU puts them in its one-line error."""
    from render.scene import _select_device

    capfd.readouterr()
    found = _select_device("auto")
    assert capfd.readouterr() == ("", "")
    if found != "CPU":
        pytest.skip(f"this machine has a {found} GPU")
    with pytest.raises(RuntimeError, match="found no OptiX, CUDA, HIP") as error:
        _select_device("gpu")
    assert "\n" not in str(error.value) and capfd.readouterr() == ("", "")


def test_render_goes_through_an_uncompressed_file_in_memory(scene):
    from render.scene import memory_tmp_dir

    scene.set_object(mesh_arrays_from_trimesh(trimesh.creation.icosphere(subdivisions=1)))
    scene.apply_latent(latent())
    scene.render()
    written = Path(scene.scene.render.filepath)
    assert written.suffix == ".bmp" and scene.scene.render.image_settings.file_format == "BMP"
    if Path("/dev/shm").is_dir():
        assert memory_tmp_dir() == "/dev/shm" and written.parent.parent == Path("/dev/shm")


def test_a_render_blender_cannot_write_or_that_is_cut_short_is_an_os_error_naming_it(scene, tmp_path):
    """Blender says only "cannot save" when its output folder is full (a container's small /dev/shm):
    an OSError naming the file, which `3die render` turns into one line, instead of a traceback."""
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    real = scene._tmp
    try:
        scene._tmp = type("Folder", (), {"name": str(in_the_way)})()  # a file where the folder should be
        with pytest.raises(OSError, match="Blender could not write its render here") as raised:
            scene.render()
        assert raised.value.filename == str(in_the_way / "view.bmp")
    finally:
        scene._tmp = real


def test_the_memory_folder_is_used_only_with_room_for_the_renders(monkeypatch, tmp_path):
    from render import scene as scene_module

    monkeypatch.setattr(scene_module, "MEMORY_TMP", tmp_path)
    needed = scene_module.render_file_bytes(256)
    assert needed == 54 + 256 * 256 * 3
    assert scene_module.render_file_bytes(5) == 54 + 5 * 16  # rows padded to 4 bytes
    free = type("Usage", (), {"free": 8 * needed})
    monkeypatch.setattr(scene_module.shutil, "disk_usage", lambda path: free)
    assert scene_module.memory_tmp_dir(needed) == str(tmp_path)
    assert scene_module.memory_tmp_dir(needed + 1) is None  # the system's temporary folder instead
