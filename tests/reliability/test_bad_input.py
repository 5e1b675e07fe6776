"""Bad input to `3die render`: broken mesh files, a ShapeNet folder with missing textures, materials and
models, an objects CSV naming objects that do not exist, missing or misspelled folders.

A per-object problem is one line in failures.jsonl (a fallback, such as a missing texture, one line in
warnings.jsonl) and the run renders every other object; a problem with the whole input is one error line.
Broken OBJ/PLY/STL files inside a run are also in tests/render/test_launch.py
(test_broken_meshes_go_to_failures_and_the_run_goes_on); manifest syntax errors in test_manifest.py.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from faults import child_env, cli_command, obey_permissions
from PIL import Image

from benchmark.cli import main
from render import spec, writer
from render.check import check_dataset
from render.launch import RenderConfig, render_dataset
from render.sources import MAX_MESH_BYTES, MeshDirSource

AIRPLANE = "02691156"
TINY = ["--views", "2", "--size", "16", "--quality", "draft", "--device", "cpu"]


def config(out) -> RenderConfig:
    return RenderConfig(out, views=2, size=16, quality="draft", device="cpu")


def write_bad_meshes(root) -> dict[str, str]:
    """ROOT/thing/NAME.EXT for one good mesh and one of each kind of bad mesh; returns the expected reason
    of each bad one."""
    folder = root / "thing"
    folder.mkdir(parents=True)
    sphere = trimesh.creation.icosphere(subdivisions=1)
    sphere.export(folder / "good.ply")
    data = sphere.export(file_type="ply")
    (folder / "truncated.ply").write_bytes(data[: len(data) // 2])
    (folder / "empty.stl").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(folder / "picture.png")
    (folder / "picture.png").rename(folder / "picture.obj")  # not a mesh
    (folder / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (folder / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n")  # a line
    with (folder / "enormous.stl").open("wb") as handle:
        handle.truncate(MAX_MESH_BYTES + 1)  # sparse: takes no disk space
    return {
        "truncated": "PLY is unexpected length",
        "empty": "the mesh has no faces",
        "picture": "the mesh has no faces",
        "nan": "non-finite vertex coordinates",
        "flat": "zero surface area",
        "enormous": "decimate or split it",
    }


@pytest.mark.slow
def test_every_broken_mesh_is_one_failure_and_the_good_one_renders(tmp_path):
    reasons = write_bad_meshes(tmp_path / "meshes")
    out = tmp_path / "out"
    summary = render_dataset(config(out), MeshDirSource(tmp_path / "meshes"), progress=False)
    assert (summary.rendered, summary.failed) == (1, len(reasons))
    failures = writer.read_failures(out)
    assert set(failures) == {f"thing/{name}" for name in reasons}
    for name, reason in reasons.items():
        assert name in failures[f"thing/{name}"] and reason in failures[f"thing/{name}"], failures
    report = check_dataset(out)
    assert report.ok and report.objects == 1 and len(report.failures) == len(reasons)


def write_shapenet_object(root, object_id, mtl: str | None, texture: bool) -> None:
    """A ShapeNetCore v2 object (a Y-up box); `mtl`: the .mtl text (None: the .mtl file is missing);
    `texture`: whether the image its material names exists."""
    folder = root / AIRPLANE / object_id
    (folder / "models").mkdir(parents=True)
    (folder / "images").mkdir()
    if texture:
        Image.new("RGB", (4, 4), (0, 0, 255)).save(folder / "images" / "texture0.png")
    if mtl is not None:
        (folder / "models" / "model_normalized.mtl").write_text(mtl)
    box = trimesh.creation.box((0.2, 0.8, 0.3))
    lines = ["mtllib model_normalized.mtl", *(f"v {x} {y} {z}" for x, y, z in box.vertices)]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "usemtl body"]
    lines += [f"f {a}/1 {b}/2 {c}/3" for a, b, c in box.faces + 1]
    (folder / "models" / "model_normalized.obj").write_text("\n".join(lines) + "\n")


#: ShapeNet OBJs that Blender's importer reads without complaint (NaN and overflowing numbers become 0),
#: each with the reason it fails.
BAD_OBJ_VERTICES = {
    "nan-vertex": "v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 0\n",
    "overflow": "v 0 0 0\nv 1e39 0 0\nv 0 1 0\nv 1 1 0\n",
    "flat": "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\n",
    "point": "v 0 0 0\nv 0 0 0\nv 0 0 0\nv 0 0 0\n",
}
BAD_OBJ_REASONS = {
    "nan-vertex": "model_normalized.obj:2: non-finite vertex coordinates (v nan 0 0)",
    "overflow": "model_normalized.obj:2: non-finite vertex coordinates (v 1e39 0 0)",
    "flat": "model_normalized.obj: the mesh has zero surface area",
    "point": "model_normalized.obj: the mesh has a zero-size bounding box",
}


TEXTURED_OBJ = (
    "mtllib {library}\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl body\n"
    "f 1/1 3/3 2/2\nf 1/1 2/2 4/3\nf 1/1 4/3 3/3\nf 2/2 3/3 4/3\n"
)


def test_a_rerun_after_every_object_failed_says_so_and_how_to_retry(tmp_path):
    """The cause mended (here: the files made readable meshes), a plain rerun does not try the objects
    recorded as failed: it must say so, not report them as done."""
    folder = tmp_path / "meshes" / "thing"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        (folder / f"{name}.obj").write_text("garbage\n")
    out = tmp_path / "out"
    render = ["render", "--out", str(out), "--mesh-dir", str(tmp_path / "meshes"), *TINY]
    first = CliRunner().invoke(main, render)
    assert first.exit_code == 1 and "no object of the dataset could be rendered" in first.output
    for name in ("a", "b"):
        trimesh.creation.box().export(folder / f"{name}.obj")
    again = CliRunner().invoke(main, render)
    assert again.exit_code == 1, again.output
    recorded = f"2 recorded as failed by an earlier run, not tried again (see {out / spec.FAILURES_NAME}"
    assert f"0 already done; {recorded}" in again.output
    assert "(--retry-failed tries them again once the cause is mended)" in again.output
    retried = CliRunner().invoke(main, [*render, "--retry-failed"])
    assert retried.exit_code == 0 and "rendered 2 objects" in retried.output, retried.output
    done = CliRunner().invoke(main, render)  # failures.jsonl still lists them: complete, they are done
    assert done.exit_code == 0 and "2 already done; splits" in done.output, done.output


@pytest.mark.parametrize("where", ["same", "class-level", "new-class", "in-a-class"])
def test_a_dataset_folder_where_the_next_run_would_read_it_as_models_is_refused(tmp_path, where):
    """The root, a folder directly in it or under a folder that is no class would be read as a class of
    meshes by the next run; a folder inside a class folder is never read (only files directly in it)."""
    folder = tmp_path / "meshes" / "thing"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        trimesh.creation.box().export(folder / f"{name}.ply")
    out = {
        "same": tmp_path / "meshes",
        "class-level": tmp_path / "meshes" / "rendered",
        "new-class": tmp_path / "meshes" / "rendered" / "set",
        "in-a-class": folder / "rendered",
    }[where]
    render = ["render", "--out", str(out), "--mesh-dir", str(tmp_path / "meshes"), *TINY]
    result = CliRunner().invoke(main, render)
    if where == "in-a-class":
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(main, render)  # the source still reads as it did
        assert again.exit_code == 0 and "0 objects (0 images)" in again.output, again.output
        return
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {out}: inside the folder of models {tmp_path / 'meshes'}" in result.output
    assert not (out / spec.MANIFEST_NAME).exists()


@pytest.mark.slow
def test_mesh_dir_objs_with_missing_or_broken_textures_render_with_a_warning(tmp_path):
    """A texture that is missing or does not decode, or a material library that is missing: the object
    renders in its material's colour, with a line in warnings.jsonl, and the run goes on."""
    folder = tmp_path / "meshes" / "thing"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4), (250, 50, 50)).save(folder / "red.png")
    (folder / "garbage.png").write_bytes(b"not a png at all")
    for name, texture in (
        ("textured", "red.png"),
        ("no-texture", "gone.png"),
        ("bad-texture", "garbage.png"),
    ):
        (folder / f"{name}.mtl").write_text(f"newmtl body\nKd 0.2 0.6 0.2\nmap_Kd {texture}\n")
        (folder / f"{name}.obj").write_text(TEXTURED_OBJ.format(library=f"{name}.mtl"))
    (folder / "no-material.obj").write_text(TEXTURED_OBJ.format(library="gone.mtl"))
    (folder / "plain.mtl").write_text("newmtl body\nKd 0.2 0.6 0.2\n")  # a colour, no texture: no warning
    (folder / "plain.obj").write_text(TEXTURED_OBJ.format(library="plain.mtl"))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["render", "--out", str(out), "--mesh-dir", str(tmp_path / "meshes"), *TINY]
    )
    assert result.exit_code == 0, result.output
    assert "rendered 5 objects" in result.output and not (out / spec.FAILURES_NAME).exists()
    assert f"; 3 rendered with warnings (see {out / writer.WARNINGS_NAME})" in result.output
    reasons = {key.split("/")[1]: reason for key, (reason,) in writer.read_warnings(out).items()}
    assert set(reasons) == {"no-texture", "bad-texture", "no-material"}
    for name in ("no-texture", "bad-texture"):
        assert "material body: texture missing or unreadable" in reasons[name], reasons
    assert f"material library {folder / 'gone.mtl'} is missing" in reasons["no-material"]
    assert check_dataset(out).ok


@pytest.mark.slow
def test_shapenet_folder_with_missing_textures_materials_models_and_unknown_ids(tmp_path):
    root = tmp_path / "ShapeNetCore.v2"
    material = "newmtl body\nKd 0.5 0.5 0.5\nmap_Kd ../images/texture0.png\n"
    write_shapenet_object(root, "textured", material, texture=True)
    write_shapenet_object(root, "no-texture", material, texture=False)
    write_shapenet_object(root, "no-material", None, texture=False)
    (root / AIRPLANE / "no-model" / "models").mkdir(parents=True)
    (root / AIRPLANE / "garbage" / "models").mkdir(parents=True)
    (root / AIRPLANE / "garbage" / "models" / "model_normalized.obj").write_text("v 0 0\nf 1 x\n")
    for name, vertices in BAD_OBJ_VERTICES.items():  # Blender's importer reads these as a mesh
        (root / AIRPLANE / name / "models").mkdir(parents=True)
        (root / AIRPLANE / name / "models" / "model_normalized.obj").write_text(
            f"{vertices}f 1 2 3\nf 2 3 4\n"
        )
    objects = [
        "textured",
        "no-texture",
        "no-material",
        "no-model",
        "garbage",
        "not-on-disk",
        *BAD_OBJ_VERTICES,
    ]
    objects_csv = tmp_path / "objects.csv"
    rows = [f"{AIRPLANE},{object_id},0,train,shapenet" for object_id in objects]
    objects_csv.write_text("synset,object_id,label,split,source\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["render", "--out", str(out), "--shapenet-dir", str(root), "--objects", str(objects_csv), *TINY]
    )
    assert result.exit_code == 0, result.output
    assert "rendered 3 objects" in result.output and "7 failed" in result.output
    assert f"; 2 rendered with warnings (see {out / writer.WARNINGS_NAME})" in result.output
    failures = writer.read_failures(out)
    failed = ("no-model", "garbage", "not-on-disk", *BAD_OBJ_VERTICES)
    assert set(failures) == {f"{AIRPLANE}/{name}" for name in failed}
    for name, reason in BAD_OBJ_REASONS.items():
        assert failures[f"{AIRPLANE}/{name}"].startswith(str(root / AIRPLANE / name)), failures
        assert reason in failures[f"{AIRPLANE}/{name}"], failures
    assert (
        "missing (the object folder has no models/model_normalized.obj)" in failures[f"{AIRPLANE}/no-model"]
    )
    assert "not-on-disk" in failures[f"{AIRPLANE}/not-on-disk"]
    assert failures[f"{AIRPLANE}/garbage"].endswith(
        "garbage/models/model_normalized.obj: the mesh has no faces"
    )
    warnings = [json.loads(line) for line in (out / writer.WARNINGS_NAME).read_text().splitlines()]
    reasons = {w["object"]: w["reason"] for w in warnings}
    assert set(reasons) == {f"{AIRPLANE}/no-texture", f"{AIRPLANE}/no-material"}
    assert writer.read_warnings(out) == {key: [reason] for key, reason in reasons.items()}
    assert "texture0.png is missing or unreadable" in reasons[f"{AIRPLANE}/no-texture"]
    assert "model_normalized.mtl is missing" in reasons[f"{AIRPLANE}/no-material"]
    assert check_dataset(out).ok
    for name in ("no-texture", "no-material"):  # rendered with the material's colour, never magenta
        image = np.asarray(Image.open(out / AIRPLANE / name / spec.image_name(0))).astype(int)
        magenta = (image[..., 0] > 150) & (image[..., 2] > 150) & (image[..., 1] < 80)
        assert not magenta.any(), name


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--shapenet-dir", "{tmp}/ShapeNetCore.v3"], "ShapeNetCore.v3' does not exist"),
        (["--mesh-dir", "{tmp}/mehses"], "mehses' does not exist"),
        (["--objects", "{tmp}/objcts.csv"], "objcts.csv' does not exist"),
        (["--shapenet-dir", "{tmp}"], "no ShapeNetCore v2 synset folders"),
        (  # {tmp}/meshes/thing/box.ply: one folder level too deep
            ["--mesh-dir", "{tmp}"],
            "meshes: no mesh file directly in this class folder; expected ROOT/CLASS/NAME.{obj,glb,gltf,",
        ),
        (["--objects", "{tmp}/bad.csv"], "missing column split"),
        (
            ["--objects", "{tmp}/other.csv"],
            "lists objects of source shapenet, but this render reads procedural",
        ),
        (["--classes", "chair,chiar"], "unknown procedural classes chiar"),
        (["--classes", " , "], "--classes names no class"),
        (["--objects", "{tmp}/empty.csv"], "empty.csv: lists no objects to render"),
        (["--objects", "{tmp}/val_images.npy"], "val_images.npy: an images .npy selects ShapeNet objects"),
        (["--mesh-dir", "{tmp}/meshes", "--objects", "{tmp}/val_images.npy"], "for the mesh-dir source give"),
        (["--limit", "-1"], "--limit must be at least 1, got -1"),  # was: every object but the last
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--per-class", "100001"], "--per-class must be from 1 to 100000, got 100001"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--workers", "100000"], "--workers 100000 is more than 4 processes per CPU core ("),
        (["--recycle-every", "0"], "--recycle-every must be at least 1, got 0"),
        (["--slurm", "--jobs", "-2"], "--jobs must be at least 1, got -2"),
        (["--slurm", "--jobs", "0"], "--jobs must be at least 1, got 0"),  # was: the estimate
    ],
)
def test_missing_misspelled_or_unusable_input_is_one_line(tmp_path, arguments, message):
    (tmp_path / "bad.csv").write_text("synset,object_id,label,source\n")
    (tmp_path / "empty.csv").write_text("synset,object_id,label,split,source\n")
    np.save(tmp_path / "val_images.npy", np.array([f"/{AIRPLANE}/a/"]))
    (tmp_path / "meshes" / "thing").mkdir(parents=True)
    trimesh.creation.box().export(tmp_path / "meshes" / "thing" / "box.ply")
    (tmp_path / "other.csv").write_text(
        f"synset,object_id,label,split,source\n{AIRPLANE},a,0,train,shapenet\n"
    )
    out = tmp_path / "out"
    options = [argument.format(tmp=tmp_path) for argument in arguments]
    result = CliRunner().invoke(main, ["render", "--out", str(out), *options, *TINY])
    assert result.exit_code in (1, 2), result.output
    assert message in result.output and "Traceback" not in result.output
    assert not list(out.glob("*/*")), "nothing rendered"
    assert not (out / spec.MANIFEST_NAME).exists(), "the folder is not claimed for these options"


@pytest.mark.parametrize(
    "command",
    [
        ["check", "{tmp}"],
        ["pack", "{tmp}", "--out", "{tmp}/p.h5"],
        ["train", "--method", "sie", "--data", "{tmp}", "--out", "{tmp}/run"],
        ["evaluate", "{tmp}/run"],
        ["benchmark", "--method", "sie", "--data", "{tmp}"],
    ],
    ids=lambda command: command[0],
)
def test_more_workers_than_the_cores_can_run_is_refused_before_any_work(tmp_path, command):
    """A slip such as --workers 100000 would start that many decoding processes."""
    cores = len(os.sched_getaffinity(0))
    arguments = [argument.format(tmp=tmp_path) for argument in command]
    result = CliRunner().invoke(main, [arguments[0], "--workers", str(4 * cores + 1), *arguments[1:]])
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: --workers {4 * cores + 1} is more than 4 processes per CPU core ({cores} usable here); "
        f"use at most {4 * cores}\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "nothing written"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["pack", "{tmp}", "--out", "{tmp}/p.h5", "--workers", "-2"], "--workers must be 0 or more, got -2"),
        (
            ["benchmark", "--method", "sie", "--render-workers", "0"],
            "--render-workers must be 1 or more, got 0",
        ),
    ],
    ids=["pack", "benchmark-render"],
)
def test_too_few_workers_are_named_by_their_option(tmp_path, arguments, message):
    result = CliRunner().invoke(main, [argument.format(tmp=tmp_path) for argument in arguments])
    assert result.exit_code == 1 and result.output == f"Error: {message}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command, message",
    [
        (["render"], "--classes names no class; give class names separated by commas"),
        (["benchmark", "--method", "sie"], "--classes names no class; give class names separated by commas"),
        (["objects"], "no class given; valid classes: airplane, "),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_an_empty_classes_option_is_refused_not_read_as_every_class(tmp_path, command, message):
    """`--classes ""` (an unset shell variable) once rendered every class for objects and benchmark."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*command, "--classes", " , ", "--out", str(out)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {message}"), result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["render", "--out", ""],
        ["objects", "--out", " "],
        ["train", "--method", "sie", "--data", "{tmp}", "--out", ""],
        ["pack", "{tmp}", "--out", ""],
        ["benchmark", "--method", "sie", "--out", ""],
    ],
    ids=lambda command: command[0],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [argument.format(tmp=tmp_path) for argument in command])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "an empty path; give a file or folder name" in result.output.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_procedural_objects_csv_with_unknown_ids_fails_those_objects_only(tmp_path):
    objects_csv = tmp_path / "objects.csv"
    rows = ["03001627,chair-s0-i00000,0,train,procedural", "03001627,armchair-42,0,train,procedural"]
    objects_csv.write_text("synset,object_id,label,split,source\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", "--out", str(out), "--objects", str(objects_csv), *TINY])
    assert result.exit_code == 0 and "rendered 1 objects" in result.output and "1 failed" in result.output
    assert "armchair-42" in writer.read_failures(out)["03001627/armchair-42"]
    assert check_dataset(out).ok
    # a render whose every object fails exits 1, saying where the reasons are
    objects_csv.write_text("synset,object_id,label,split,source\n" + rows[1] + "\n")
    nothing = tmp_path / "nothing"
    result = CliRunner().invoke(main, ["render", "--out", str(nothing), "--objects", str(objects_csv), *TINY])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1] == (
        f"Error: {nothing}: no object of the dataset could be rendered; "
        f"{nothing / spec.FAILURES_NAME} says why"
    ), result.output
    assert "03001627/armchair-42" in writer.read_failures(nothing)
    # SLURM options without --slurm
    result = CliRunner().invoke(main, ["render", "--out", str(nothing), "--partition", "gpu", "--time", "0"])
    assert result.exit_code == 1 and result.output.strip() == (
        "Error: --partition, --time: SLURM options; add --slurm, or leave them out"
    )


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"format": ', "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b'{"settings": 3}', "its settings are not an object"),
        (b'{"settings": {"views": "fifty"}}', "settings.views is 'fifty', not a positive integer"),
        (b'{"settings": {"rotation": "sideways"}}', "settings.rotation is 'sideways'"),
    ],
)
def test_a_damaged_manifest_stops_render_and_fails_check_with_one_line(tmp_path, content, reason):
    out = tmp_path / "out"
    out.mkdir()
    (out / spec.MANIFEST_NAME).write_bytes(content)
    runner = CliRunner()
    for command in (["render", "--out", str(out), *TINY], ["check", str(out)]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), "an uncaught exception, not a clear line"
        lines = [line for line in result.output.splitlines() if spec.MANIFEST_NAME in line]
        assert (
            len(lines) == 1 and f"{out / spec.MANIFEST_NAME}: damaged dataset manifest ({reason}" in lines[0]
        )
    assert (out / spec.MANIFEST_NAME).read_bytes() == content, "the manifest is left as it was"
    assert not list(out.glob("*/*")), "nothing rendered"


def render_obeying_permissions(*arguments: str) -> subprocess.CompletedProcess:
    """`3die render ARGUMENTS` in a child that obeys file permissions (root drops its override)."""
    return subprocess.run(
        cli_command("render", *arguments, *TINY),
        preexec_fn=obey_permissions,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )


@pytest.mark.slow
def test_an_unreadable_mesh_is_one_failure_and_an_unreadable_folder_one_line(tmp_path):
    """An unreadable OBJ used to stop the whole run ("…: Permission denied; … free disk space")."""
    root = tmp_path / "ShapeNetCore.v2"
    write_shapenet_object(root, "readable", None, texture=False)
    write_shapenet_object(root, "unreadable", None, texture=False)
    (root / "99999999" / "custom" / "models").mkdir(parents=True)  # not a ShapeNet synset: left out, said
    model = root / AIRPLANE / "unreadable" / "models" / "model_normalized.obj"
    model.chmod(0)
    out = tmp_path / "out"
    try:
        finished = render_obeying_permissions("--out", str(out), "--shapenet-dir", str(root))
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert "rendered 1 objects" in finished.stdout and "1 failed" in finished.stdout
        assert (
            f"{root}: note: left out the folders that are not ShapeNetCore v2 synsets (1: 99999999); render "
            "other classes with --mesh-dir, or list objects with --objects"
        ) in finished.stdout
        reason = writer.read_failures(out)[f"{AIRPLANE}/unreadable"]
        assert reason == f"{model}: cannot read it (Permission denied)"
        (root / AIRPLANE).chmod(0)
        stopped = render_obeying_permissions("--out", str(tmp_path / "other"), "--shapenet-dir", str(root))
        assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
        assert f"Error: {root / AIRPLANE}: cannot list the objects (Permission denied)" in stopped.stderr
    finally:
        (root / AIRPLANE).chmod(0o755)
        model.chmod(0o644)
    assert check_dataset(out).ok


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--method", "sie", "--data", "{fifo}", "--out", "{tmp}/run"],
        ["train", "--method", "sie", "--data", "{tmp}", "--out", "{fifo}"],
        ["pack", "{tmp}", "--out", "{fifo}"],
        ["leaderboard", "{tmp}", "--out", "{fifo}"],
        ["render", "--out", "{tmp}/d", "--objects", "{fifo}"],
        ["benchmark", "--method", "sie", "--leaderboard", "{fifo}"],
    ],
    ids=["train-data", "train-out", "pack-out", "leaderboard-out", "render-objects", "benchmark-leaderboard"],
)
def test_a_pipe_or_device_given_for_a_file_or_folder_is_refused_not_waited_on(tmp_path, command):
    """Opening a FIFO blocks until someone writes to it: refused as neither a file nor a folder."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, [argument.format(tmp=tmp_path, fifo=fifo) for argument in command])
    assert result.exit_code == 2, result.output
    assert f"{fifo}: neither a file nor a folder (a device or a pipe)" in result.output
