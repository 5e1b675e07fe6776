"""`3die pack`: one HDF5 file that reads back exactly like the folder it was packed from."""

import dataclasses
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from synthetic_data import write_dataset

from benchmark.cli import main
from benchmark.data import DatasetError, PackedViews, open_dataset, pack_dataset
from benchmark.data import packed as packed_module
from render import spec
from render.manifest import read_objects_csv, write_objects_csv


@pytest.fixture(scope="module")
def packed_file(synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "data.h5"
    summary = pack_dataset(synthetic_dataset.root, out)
    assert summary.objects == 12 and summary.packed == 12 and summary.resumed == 0
    return out


def test_folder_and_packed_file_give_identical_latents_and_decoded_images(synthetic_dataset, packed_file):
    for split in ("train", "val"):
        folder, packed = open_dataset(synthetic_dataset.root, split), open_dataset(packed_file, split)
        assert isinstance(packed, PackedViews)
        assert packed.keys == folder.keys and packed.views == folder.views == 50
        np.testing.assert_array_equal(packed.labels, folder.labels)
        assert packed.classes == folder.classes
        np.testing.assert_array_equal(packed.all_latents(), folder.all_latents())
        for index in range(len(folder)):
            for view in range(folder.views):
                assert packed.jpeg(index, view) == folder.jpeg(index, view)
                np.testing.assert_array_equal(packed.image(index, view, 16), folder.image(index, view, 16))


def test_packed_file_layout(synthetic_dataset, packed_file):
    with h5py.File(packed_file) as handle:
        assert handle["jpeg_offsets"].shape == (12, 51) and handle["jpeg_offsets"].chunks == (1, 51)
        offsets = handle["jpeg_offsets"][()]
        assert offsets[0, 0] == 0 and offsets[-1, -1] == handle["jpeg_bytes"].shape[0]
        assert (offsets[1:, 0] == offsets[:-1, -1]).all() and (np.diff(offsets, axis=1) > 0).all()
        assert handle["latents"].shape == (12, 50, spec.LATENT_DIM) and handle["latents"].dtype == np.float64
        assert handle["latents"].chunks == (1, 50, spec.LATENT_DIM)
        assert handle["labels"].dtype == np.int64
        assert list(handle["split"].asstr()[()]).count("val") == 3
        root = synthetic_dataset.root
        assert handle["manifest"].asstr()[()] == (root / spec.MANIFEST_NAME).read_text()
        assert handle["objects_csv"].asstr()[()] == (root / spec.OBJECTS_CSV_NAME).read_text()
        names = ["class-02691156", "class-02773838", "class-02801938"]
        assert list(handle["class_names"].asstr()[()]) == names
        assert handle.attrs["image_size"] == 0 and handle.attrs["views"] == 50
        assert handle["skipped_objects"].shape == handle["skipped_problems"].shape == (0,), "a whole folder"


def test_official_layout_packs_with_empty_manifest(official_dataset, tmp_path):
    out = tmp_path / "official.h5"
    pack_dataset(official_dataset.root, out)
    packed = open_dataset(out, "val")
    assert packed.keys == official_dataset.splits["val"] and packed.num_classes == 55
    with h5py.File(out) as handle:
        assert handle["manifest"].asstr()[()] == ""


def test_pack_command_re_encodes_at_a_smaller_size(synthetic_dataset, tmp_path):
    out = tmp_path / "small.h5"
    arguments = ["pack", str(synthetic_dataset.root), "--out", str(out), "--size", "16"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert f"{out}: 12 objects" in result.output
    folder, packed = open_dataset(synthetic_dataset.root), open_dataset(out)
    np.testing.assert_array_equal(packed.all_latents(), folder.all_latents())
    assert packed.image(0, 0).shape == (16, 16, 3)
    same_view = np.abs(packed.image(0, 0).astype(int) - folder.image(0, 0, 16).astype(int)).mean()
    other_view = np.abs(packed.image(0, 0).astype(int) - folder.image(0, 1, 16).astype(int)).mean()
    assert same_view < 12 and same_view < other_view / 2, "the same picture, up to JPEG loss at 16 px"
    with h5py.File(out) as handle:
        assert handle.attrs["image_size"] == 16 and handle.attrs["jpeg_quality"] == 95


def interrupt_after(objects: int):
    """A pack's `on_object` callback that raises KeyboardInterrupt (as Ctrl-C) once `objects` are packed."""
    packed = []

    def on_object():
        packed.append(1)
        if len(packed) == objects:
            raise KeyboardInterrupt

    return on_object


def test_interrupted_pack_resumes_to_the_same_file(tmp_path, monkeypatch):
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=3, val_per_class=1, views=4, size=16)
    reference = tmp_path / "reference.h5"
    pack_dataset(dataset.root, reference, size=8)
    out = tmp_path / "resumed.h5"
    monkeypatch.setattr(packed_module, "FLUSH_EVERY", 2)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(dataset.root, out, size=8, on_object=interrupt_after(3))
    partial = out.with_name("resumed.h5.partial")
    assert not out.exists() and partial.exists()
    with h5py.File(partial, "r+") as handle:  # bytes of an object whose write was cut short
        handle["jpeg_bytes"].resize((handle["jpeg_bytes"].shape[0] + 100,))
    with pytest.raises(DatasetError, match=r"resumed\.h5\.partial: an unfinished pack .* other options"):
        pack_dataset(dataset.root, out, size=12)
    summary = pack_dataset(dataset.root, out, size=8)
    assert summary.resumed == 3 and summary.packed == 5
    for split in ("train", "val"):
        expected, resumed = open_dataset(reference, split), open_dataset(out, split)
        np.testing.assert_array_equal(resumed.all_latents(), expected.all_latents())
        for index in range(len(expected)):
            assert resumed.jpegs(index, (0, 1, 2, 3)) == expected.jpegs(index, (0, 1, 2, 3))
    with h5py.File(reference) as expected, h5py.File(out) as resumed:
        np.testing.assert_array_equal(resumed["jpeg_bytes"][()], expected["jpeg_bytes"][()])


def test_a_resumed_pack_takes_the_splits_and_labels_of_the_folder_as_it_is_now(tmp_path, monkeypatch):
    """An object moved from the train to the val split while a pack was interrupted (the flattened object
    list stays the same): the resumed file has the folder's splits and labels, not the old ones."""
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=3, val_per_class=1, views=3, size=16)
    out = tmp_path / "data.h5"
    monkeypatch.setattr(packed_module, "FLUSH_EVERY", 1)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(dataset.root, out, on_object=interrupt_after(2))
    root = dataset.root
    train, val = np.load(root / "train_images.npy"), np.load(root / "val_images.npy")
    train_labels, val_labels = np.load(root / "train_labels.npy"), np.load(root / "val_labels.npy")
    np.save(root / "train_images.npy", train[:-1])
    np.save(root / "val_images.npy", np.concatenate([train[-1:], val]))
    np.save(root / "train_labels.npy", train_labels[:-1])
    np.save(root / "val_labels.npy", np.concatenate([train_labels[-1:], val_labels]))
    moved = "/".join(str(train[-1]).strip("/").split("/"))
    entries = read_objects_csv(root / spec.OBJECTS_CSV_NAME)  # the object list says the same
    write_objects_csv(
        root / spec.OBJECTS_CSV_NAME,
        [dataclasses.replace(e, split="val") if f"{e.synset}/{e.object_id}" == moved else e for e in entries],
    )
    assert pack_dataset(root, out).resumed == 2
    for split in ("train", "val"):
        folder, packed = open_dataset(root, split), open_dataset(out, split)
        assert packed.keys == folder.keys and list(packed.labels) == list(folder.labels), split
        np.testing.assert_array_equal(packed.all_latents(), folder.all_latents())
    assert len(open_dataset(out, "train")) == 5 and len(open_dataset(out, "val")) == 3


def test_an_unfinished_pack_that_cannot_be_opened_is_kept_and_named(tmp_path, monkeypatch):
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=2, val_per_class=1, views=3, size=16)
    out, partial = tmp_path / "data.h5", tmp_path / "data.h5.partial"
    monkeypatch.setattr(packed_module, "FLUSH_EVERY", 1)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(dataset.root, out, on_object=interrupt_after(2))
    kept = partial.read_bytes()
    real_file = h5py.File

    def file(name, mode="r", *arguments, **options):
        if mode == "r+":
            raise PermissionError(13, "Permission denied", str(name))
        return real_file(name, mode, *arguments, **options)

    monkeypatch.setattr(packed_module.h5py, "File", file)
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(partial))}: cannot open the unfinished pack"):
        pack_dataset(dataset.root, out)
    assert partial.read_bytes() == kept
    monkeypatch.setattr(packed_module.h5py, "File", real_file)
    assert pack_dataset(dataset.root, out).resumed == 2


LIVE_PACK = """
import sys, time
from pathlib import Path
from benchmark.data import pack_dataset
root, out, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
written = []
def hold_after_the_first_object():
    written.append(1)
    if len(written) == 1:
        print("packing", flush=True)
        while not go.exists():
            time.sleep(0.01)
print(pack_dataset(root, out, on_object=hold_after_the_first_object).objects, flush=True)
"""


def test_a_second_pack_to_the_same_file_stops_and_deletes_nothing(tmp_path):
    """A pack started while another process packs into the same file stops with one line naming it; the
    live pack's partial file is left alone and that pack completes."""
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=2, val_per_class=1, views=3, size=16)
    out, go = tmp_path / "data.h5", tmp_path / "go"
    partial = tmp_path / "data.h5.partial"
    live = subprocess.Popen(
        [sys.executable, "-c", LIVE_PACK, str(dataset.root), str(out), str(go)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout.readline().strip() == "packing"
        inode = partial.stat().st_ino
        with pytest.raises(DatasetError) as refused:
            pack_dataset(dataset.root, out)
        message = str(refused.value)
        assert message.startswith(f"{out}: another `3die pack` (pid {live.pid} on ") and "\n" not in message
        result = CliRunner().invoke(main, ["pack", str(dataset.root), "--out", str(out)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"Error: {out}: another `3die pack`" in result.output
        assert partial.stat().st_ino == inode and not out.exists()
    finally:
        go.touch()
    assert live.wait(timeout=120) == 0 and live.stdout.read().strip() == "6"
    assert not partial.exists()
    packed = [open_dataset(out, split) for split in ("train", "val")]
    assert [len(views) for views in packed] == [4, 2] and packed[0].jpeg(3, 2)[:2] == b"\xff\xd8"


HOLD_OPEN = """
import sys
import h5py
with h5py.File(sys.argv[1], "r"):
    print("open", flush=True)
    sys.stdin.read()
"""


def test_a_partial_file_open_in_another_process_is_kept_and_named(tmp_path, monkeypatch):
    """HDF5's own lock on FILE.partial (a reader, or a pack that does not take the pack lock) stops the
    pack with one line instead of the file being taken for damage and deleted; the rerun resumes it."""
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=2, val_per_class=1, views=3, size=16)
    out, partial = tmp_path / "data.h5", tmp_path / "data.h5.partial"
    monkeypatch.setattr(packed_module, "FLUSH_EVERY", 1)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(dataset.root, out, on_object=interrupt_after(2))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(partial)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        kept = partial.read_bytes()
        with pytest.raises(DatasetError, match=rf"^{re.escape(str(partial))}: open in another process"):
            pack_dataset(dataset.root, out)
        assert partial.read_bytes() == kept and not out.exists()
    finally:
        holder.communicate("", timeout=60)
    summary = pack_dataset(dataset.root, out)
    assert summary.resumed == 2 and summary.packed == 4


def test_parallel_pack_equals_serial_pack(tmp_path):
    """Objects come back from the workers in chunks of 4: with several chunks in flight, every object
    still lands in its own row."""
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=8, val_per_class=1, views=3, size=16)
    pack_dataset(dataset.root, tmp_path / "serial.h5", size=8)
    pack_dataset(dataset.root, tmp_path / "parallel.h5", size=8, workers=2)
    with h5py.File(tmp_path / "serial.h5") as serial, h5py.File(tmp_path / "parallel.h5") as parallel:
        for name in ("jpeg_offsets", "jpeg_bytes", "latents", "labels"):
            np.testing.assert_array_equal(parallel[name][()], serial[name][()], err_msg=name)


def test_the_quality_asked_for_reaches_the_encoder_and_the_file(tmp_path):
    """A plain pack records no quality (its JPEGs are the rendered ones); a re-encoded one records the
    quality its JPEGs were written at, 1 to 100, and resumes only at that quality."""
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=3, val_per_class=1, views=3, size=32)
    sizes = {}
    for quality in (20, 100):
        out = tmp_path / f"q{quality}.h5"
        pack_dataset(dataset.root, out, size=16, quality=quality)
        with h5py.File(out) as handle:
            assert handle.attrs["jpeg_quality"] == quality
            sizes[quality] = handle["jpeg_bytes"].shape[0]
        assert open_dataset(out, "train").reencoding() == {"image_size": 16, "jpeg_quality": quality}
    assert sizes[20] < 0.8 * sizes[100]
    plain = tmp_path / "plain.h5"
    pack_dataset(dataset.root, plain)
    with h5py.File(plain) as handle:
        assert handle.attrs["jpeg_quality"] == 0 and handle.attrs["image_size"] == 0
    assert open_dataset(plain, "train").reencoding() is None


def test_an_interrupted_pack_resumes_only_at_its_own_quality(tmp_path, monkeypatch):
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=3, val_per_class=1, views=3, size=16)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(dataset.root, out, size=8, quality=50, on_object=interrupt_after(2))
    with pytest.raises(DatasetError, match=r"resumed\.h5\.partial: an unfinished pack .* other options"):
        pack_dataset(dataset.root, out, size=8, quality=90)
    assert pack_dataset(dataset.root, out, size=8, quality=50).resumed == 2


def test_packed_reader_refuses_foreign_and_incomplete_files(tmp_path, packed_file):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match=re.escape(str(foreign)) + r": not a 3die packed dataset"):
        open_dataset(foreign)
    incomplete = tmp_path / "incomplete.h5"
    incomplete.write_bytes(packed_file.read_bytes())
    with h5py.File(incomplete, "r+") as handle:
        handle["packed"][3] = False
    with pytest.raises(DatasetError, match=re.escape(str(incomplete)) + r": incomplete pack"):
        open_dataset(incomplete)
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("hello")
    with pytest.raises(DatasetError, match=re.escape(str(not_hdf5)) + r": cannot open as HDF5"):
        open_dataset(not_hdf5)


def test_pack_names_a_broken_source_file(tmp_path):
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=2, val_per_class=0, views=3, size=16)
    broken = dataset.root / dataset.splits["train"][1] / spec.image_name(2)
    broken.write_bytes(b"garbage")
    arguments = ["pack", str(dataset.root), "--out", str(tmp_path / "x.h5"), "--size", "8"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1
    assert f"{broken}: cannot decode the image" in result.output


def test_raw_pack_stores_the_pixels_the_folder_reader_decodes(synthetic_dataset, tmp_path):
    out = tmp_path / "raw.h5"
    arguments = ["pack", str(synthetic_dataset.root), "--out", str(out), "--size", "16", "--raw"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    folder, packed = open_dataset(synthetic_dataset.root, "val"), open_dataset(out, "val")
    assert packed.raw and packed.keys == folder.keys
    np.testing.assert_array_equal(packed.all_latents(), folder.all_latents())
    for index in range(len(folder)):
        for view in (0, 17, 49):
            np.testing.assert_array_equal(packed.image(index, view), folder.image(index, view, 16))
    first, second = packed.images(1, (3, 9), size=8)
    assert first.shape == (8, 8, 3) and second.shape == (8, 8, 3)
    with pytest.raises(DatasetError, match="holds decoded pixels"):
        packed.jpeg(0, 0)
    with h5py.File(out) as handle:
        assert handle.attrs["storage"] == "raw" and "jpeg_bytes" not in handle
        assert handle["pixels"].shape == (12, 50, 16, 16, 3) and handle["pixels"].chunks == (1, 50, 16, 16, 3)
    floats = tmp_path / "floats.h5"  # pixels as floats in [0, 1] would be read as near-black images
    floats.write_bytes(out.read_bytes())
    with h5py.File(floats, "r+") as handle:
        _replace(handle, "pixels", handle["pixels"][()] / 255.0)
    with pytest.raises(DatasetError, match=r"floats\.h5: damaged packed file \(pixels of type float64\)"):
        open_dataset(floats, "val")


def test_a_pack_given_through_a_symbolic_link_is_written_where_it_points(synthetic_dataset, tmp_path):
    target, link = tmp_path / "store" / "data.h5", tmp_path / "data.h5"
    target.parent.mkdir()
    link.symlink_to(target)
    result = CliRunner().invoke(main, ["pack", str(synthetic_dataset.root), "--out", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and open_dataset(target, "val").keys == open_dataset(link, "val").keys


def test_pack_refuses_a_folder_with_a_split_file_missing(tmp_path):
    """Packing only the split that is there would leave training or evaluation with nothing, much later."""
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=2, val_per_class=1, views=3, size=16)
    (dataset.root / "val_images.npy").unlink()
    result = CliRunner().invoke(main, ["pack", str(dataset.root), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and not (tmp_path / "x.h5").exists()
    assert result.output == (
        f"Error: {dataset.root / 'val_images.npy'}: missing; a dataset folder needs both split files "
        "(rerun `3die render` on it to write them)\n"
    )


def test_pack_refuses_a_jpeg_quality_outside_1_to_100_and_an_unwritable_out_with_one_line(tmp_path):
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=2, val_per_class=0, views=3, size=16)
    root = str(dataset.root)
    refused = CliRunner().invoke(
        main, ["pack", root, "--out", str(tmp_path / "q.h5"), "--size", "8", "--quality", "500"]
    )
    assert refused.exit_code == 2 and "'--quality': 500 is not in the range 1<=x<=100" in refused.output
    assert not (tmp_path / "q.h5").exists()
    with pytest.raises(DatasetError, match="--quality must be a JPEG quality from 1 to 100, got 0"):
        pack_dataset(dataset.root, tmp_path / "q.h5", size=8, quality=0)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "data.h5"  # its folder cannot be created
    result = CliRunner().invoke(main, ["pack", root, "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {out}: cannot write the packed file"), errors


def test_pack_replaces_only_a_pack_of_the_same_folder(tmp_path):
    first = write_dataset(tmp_path / "a", classes=1, train_per_class=2, val_per_class=0, views=3, size=16)
    other = write_dataset(tmp_path / "b", classes=1, train_per_class=2, val_per_class=0, views=3, size=16)
    manifest = first.root / spec.MANIFEST_NAME
    kept = manifest.read_bytes()
    for target in (manifest, tmp_path / "notes.h5"):  # a file of the dataset itself, a file of the user
        if target != manifest:
            target.write_text("notes")
        before = target.read_bytes()
        with pytest.raises(
            DatasetError, match=f"{re.escape(str(target))}: exists and is not a packed dataset"
        ):
            pack_dataset(first.root, target)
        assert target.read_bytes() == before
    assert manifest.read_bytes() == kept
    out = tmp_path / "a.h5"
    pack_dataset(first.root, out)
    packed = out.read_bytes()
    with pytest.raises(
        DatasetError, match=f"holds the pack of another folder \\({re.escape(str(first.root))}\\)"
    ):
        pack_dataset(other.root, out)
    assert out.read_bytes() == packed
    assert pack_dataset(first.root, out).objects == 2  # the same folder packed again replaces its pack
    with pytest.raises(DatasetError, match="--size must be a number of pixels from 1 to 4096, got 100000"):
        pack_dataset(first.root, tmp_path / "big.h5", size=100000)


@pytest.mark.parametrize(
    "damage",
    [
        lambda handle: handle.__delitem__("labels"),
        lambda handle: handle.__delitem__("split"),
        lambda handle: handle.__delitem__("packed"),
        lambda handle: handle.attrs.__delitem__("views"),
        lambda handle: handle["labels"].__setitem__(0, 7),
        lambda handle: handle["labels"].__setitem__(0, -1),
        lambda handle: handle.attrs.__setitem__("storage", "zip"),
        lambda handle: _shorten(handle, "object_ids"),
        lambda handle: _shorten(handle, "class_names"),
        lambda handle: _replace(handle, "labels", handle["labels"][()] + 0.5),  # would truncate to classes
        lambda handle: _replace(handle, "jpeg_offsets", handle["jpeg_offsets"][()].astype(np.float64)),
        lambda handle: _replace(handle, "latents", handle["latents"][()].astype(np.int64)),
        lambda handle: _replace(handle, "split", [b"Train", *handle["split"][1:]]),  # its object dropped
        lambda handle: _replace(handle, "jpeg_offsets", _swap_views(handle["jpeg_offsets"][()])),
        lambda handle: _replace(handle, "manifest", "{not json"),
        lambda handle: _replace(handle, "labels", handle["labels"][()][:, None]),
        lambda handle: _replace(handle, "packed", np.ones(len(handle["packed"]) - 1, bool)),
        lambda handle: _replace(handle, "manifest", "[1, 2]"),
        lambda handle: (handle.__delitem__("latents"), handle.create_group("latents")),
    ],
    ids=[
        "labels",
        "split",
        "packed",
        "views",
        "label-7",
        "label-neg",
        "storage",
        "object_ids",
        "class_names",
        "float-labels",
        "float-offsets",
        "integer-latents",
        "split-value",
        "decreasing-offsets",
        "manifest-not-json",
        "labels-2d",
        "packed-short",
        "manifest-not-object",
        "latents-group",
    ],
)
def test_a_packed_file_with_a_piece_missing_or_wrong_is_one_line_everywhere(packed_file, tmp_path, damage):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(packed_file.read_bytes())
    with h5py.File(damaged, "r+") as handle:
        damage(handle)
    for command in (["check", str(damaged)], ["train", "--method", "vicreg", "--data", str(damaged)]):
        extra = ["--out", str(tmp_path / "run"), "--preset", "tiny"] if command[0] == "train" else []
        result = CliRunner().invoke(main, [*command, *extra])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert line.startswith(f"Error: {damaged}: ") and "pack" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["two-problems-for-one-object", "a-group-for-the-problems"])
def test_a_damaged_record_of_skipped_objects_is_one_line_in_check(packed_file, tmp_path, damage):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(packed_file.read_bytes())
    with h5py.File(damaged, "r+") as handle:
        _skipped_record(handle, problems=["a", "b"])
        if damage == "a-group-for-the-problems":
            del handle["skipped_problems"]
            handle.create_group("skipped_problems")
    result = CliRunner().invoke(main, ["check", str(damaged)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {damaged}: damaged packed file")


def _skipped_record(handle, problems: list[str]) -> None:
    """A record of one object left out when packed, whose problems column says `problems`."""
    for name, values in (("skipped_split", ["train"]), ("skipped_objects", ["02691156/x"])):
        _replace(handle, name, values)
    _replace(handle, "skipped_problems", problems)


def _shorten(handle, name: str) -> None:
    _replace(handle, name, handle[name][()][:-1])


def _replace(handle, name: str, values) -> None:
    del handle[name]
    handle[name] = values


def _swap_views(offsets: np.ndarray) -> np.ndarray:
    """Offsets whose first object's middle view ends before it starts."""
    offsets = offsets.copy()
    offsets[0, 1], offsets[0, 2] = offsets[0, 2], offsets[0, 1]
    return offsets


def test_a_label_equal_to_the_number_of_classes_is_refused(packed_file, tmp_path):
    """Labels are 0..classes-1: the label `classes` is one past the file's last class."""
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(packed_file.read_bytes())
    with h5py.File(damaged, "r+") as handle:
        row = list(handle["split"].asstr()[()]).index("train")
        handle["labels"][row] = len(handle["class_names"])
    with pytest.raises(DatasetError, match=re.escape(f"{damaged}: damaged packed file (labels outside 0..2")):
        open_dataset(damaged, "train")


def test_jpeg_bytes_longer_than_the_offsets_say_are_refused(packed_file, tmp_path):
    """Bytes past the last offset are those of an object whose write was cut short: not a finished pack."""
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(packed_file.read_bytes())
    with h5py.File(damaged, "r+") as handle:
        handle["jpeg_bytes"].resize((handle["jpeg_bytes"].shape[0] + 100,))
    with pytest.raises(DatasetError, match=re.escape(f"{damaged}: jpeg_offsets do not match jpeg_bytes")):
        open_dataset(damaged, "val")


def test_a_forked_process_reads_the_pack_through_a_handle_of_its_own(packed_file):
    """DataLoader workers are forked after the parent has read images: an HDF5 handle is not safe to share
    across a fork, so the child opens the file again on its first read."""
    views = open_dataset(packed_file, "train")
    expected = views.jpeg(1, 2)
    assert views.jpeg(0, 0)[:2] == b"\xff\xd8", "the parent holds a handle"
    child = os.fork()
    if child == 0:
        try:
            status = 0 if views.jpeg(1, 2) == expected and views._owner == os.getpid() else 1
        except BaseException:
            status = 2
        os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert views.jpeg(1, 2) == expected and views._owner == os.getpid()
