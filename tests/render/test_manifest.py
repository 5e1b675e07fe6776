"""Object manifest: reading with line-level errors, atomic writing, the stratified split and the official
3DIEBench validation list."""

import os
import random
import stat

import pytest

from render import files, manifest, spec
from render.manifest import ManifestError, ObjectEntry

HEADER = "synset,object_id,label,split,source\n"


def entry(synset="02691156", object_id="a1", label=0, split="train", source="shapenet"):
    return ObjectEntry(synset, object_id, label, split, source)


def procedural_objects(counts: dict[str, int]) -> list[ObjectEntry]:
    labels = manifest.class_labels(counts)
    return [
        ObjectEntry(synset, f"{synset}-{k:03d}", labels[synset], "train", "procedural")
        for synset, count in counts.items()
        for k in range(count)
    ]


def test_write_then_read_round_trips(tmp_path):
    entries = [
        entry(),
        entry(object_id="b2", split="val"),
        entry("03001627", "c3", 18),
        ObjectEntry("my-class", "thing 1", 1, "val", "mesh-dir"),
    ]
    path = tmp_path / "sub" / "objects.csv"
    manifest.write_objects_csv(path, entries)
    assert manifest.read_objects_csv(path) == entries
    assert path.read_text().splitlines()[0] == HEADER.strip()
    assert [p.name for p in path.parent.iterdir()] == ["objects.csv"]


def test_extra_columns_are_ignored(tmp_path):
    path = tmp_path / "objects.csv"
    path.write_text("source,split,label,object_id,synset,note\nshapenet,val,0,a1,02691156,hello\n")
    assert manifest.read_objects_csv(path) == [entry(split="val")]


def test_a_spreadsheet_csv_with_a_byte_order_mark_and_crlf_lines_reads_the_same(tmp_path):
    path = tmp_path / "objects.csv"
    path.write_bytes(("\ufeff" + HEADER + "02691156,a1,0,val,shapenet\n").replace("\n", "\r\n").encode())
    assert manifest.read_objects_csv(path) == [entry(split="val")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: empty file; expected the header synset,object_id,label,split,source"),
        ("synset,object_id,label,source\n02691156,a1,0,shapenet\n", ":1: missing column split;"),
        (HEADER + "02691156,a1,0,test,shapenet\n", ":2: unknown split 'test'; expected one of train, val"),
        (HEADER + "02691156,a1,0,train,web\n", ":2: unknown source 'web'"),
        (
            HEADER + "02691156,a1,zero,train,shapenet\n",
            ":2: bad label 'zero'; expected a non-negative integer",
        ),
        (HEADER + "02691156,a1,-1,train,shapenet\n", ":2: bad label '-1'"),
        (HEADER + "02691156,a1,\u00b2,train,shapenet\n", ":2: bad label '\u00b2'"),  # isdigit() but not int()
        (
            HEADER + "02691156,a1,5,train,shapenet\n",
            ":2: bad label 5 for ShapeNet synset 02691156; expected 0",
        ),
        (HEADER + "99999999,a1,5,train,shapenet\n", ":2: '99999999' is not a ShapeNetCore v2 synset id"),
        (HEADER + "02691156,,0,train,shapenet\n", ":2: bad object_id ''"),
        (HEADER + "02691156,../x,0,train,shapenet\n", ":2: bad object_id '../x'"),
        (HEADER + "02691156,..,0,train,shapenet\n", ":2: bad object_id '..'"),
        (HEADER + "02691156,.,0,train,shapenet\n", ":2: bad object_id '.'"),
        (HEADER + "02691156,a\\b,0,train,shapenet\n", ":2: bad object_id 'a\\\\b'"),
        (HEADER + "..,a1,0,train,mesh-dir\n", ":2: bad synset '..'"),
        (HEADER + "02691156,a1,0,train\n", ":2: missing value for source"),
        (HEADER + "02691156,a1,0,train,shapenet,extra\n", ":2: too many values"),
        (
            HEADER + "02691156,a1,0,train,shapenet\n02691156,a2,0,val,shapenet\n02691156,a1,0,val,shapenet\n",
            ":4: duplicated object 02691156/a1 (first on line 2)",
        ),
        (
            HEADER + "cups,a,0,train,mesh-dir\ncups,b,1,train,mesh-dir\n",
            ":3: bad label 1 for synset cups: line 2",
        ),
        (
            HEADER + "cups,a,0,train,mesh-dir\nplates,b,0,train,mesh-dir\n",
            ":3: bad label 0: line 2 gave it to synset cups",
        ),
    ],
)
def test_read_errors_name_file_line_and_problem(tmp_path, text, message):
    path = tmp_path / "objects.csv"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        manifest.read_objects_csv(path)
    assert str(caught.value).startswith(str(path) + ":")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ManifestError, match=r"objects.csv: cannot read the object manifest"):
        manifest.read_objects_csv(tmp_path / "objects.csv")


def test_write_refuses_invalid_entries_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "objects.csv"
    manifest.write_objects_csv(path, [entry()])
    before = path.read_bytes()
    with pytest.raises(
        ManifestError, match=r"objects.csv: entry 2: duplicated object 02691156/a1 \(first on entry 1\)"
    ):
        manifest.write_objects_csv(path, [entry(), entry()])
    with pytest.raises(ManifestError, match="entry 1: unknown split 'holdout'"):
        manifest.write_objects_csv(path, [entry(split="holdout")])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "objects.csv"
    path.write_text("old\n")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        manifest.write_objects_csv(path, [entry()])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_the_permissions_of_a_new_file(tmp_path, umask):
    """Shared datasets: objects.csv (and the exported library) must be as readable as the images beside it."""
    previous = os.umask(umask)
    try:
        manifest.write_objects_csv(tmp_path / "objects.csv", [entry()])
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "objects.csv").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask


def test_labels():
    assert manifest.shapenet_label("02691156") == 0
    assert manifest.shapenet_label("04554684") == 54
    assert manifest.shapenet_label("03001627") == 18
    with pytest.raises(ManifestError, match="'123' is not a ShapeNetCore v2 synset id"):
        manifest.shapenet_label("123")
    assert manifest.class_labels(["04379243", "03001627", "03797390", "03001627"]) == {
        "03001627": 0,
        "03797390": 1,
        "04379243": 2,
    }


def test_stratified_split_fractions_and_coverage():
    counts = {"a": 100, "b": 10, "c": 5, "d": 3, "e": 2, "f": 1}
    split = manifest.stratified_split(procedural_objects(counts), val_fraction=0.2, seed=0)
    val = {synset: sum(e.synset == synset and e.split == "val" for e in split) for synset in counts}
    assert val == {"a": 20, "b": 2, "c": 1, "d": 1, "e": 1, "f": 0}
    assert all(e.split == "train" for e in split if e.synset == "f")
    assert [e.key for e in split] == sorted(e.key for e in split)
    assert len(split) == sum(counts.values())


def test_stratified_split_rounds_half_up_and_keeps_a_train_object():
    """Each class: round(count x fraction), half up, at least 1 and at most count - 1 when it has 2."""
    for counts, fraction, expected in (
        ({"a": 5}, 0.5, 3),  # 2.5 rounds up (round() would give 2)
        ({"a": 7}, 0.5, 4),  # 3.5
        ({"a": 2}, 0.8, 1),  # 1.6 -> 2, capped to keep a train object
        ({"a": 10}, 0.04, 1),  # 0.4 -> 0, raised to 1
        ({"a": 9}, 0.3, 3),  # 2.7
    ):
        split = manifest.stratified_split(procedural_objects(counts), val_fraction=fraction, seed=0)
        assert sum(entry.split == "val" for entry in split) == expected, (counts, fraction)


def test_stratified_split_is_deterministic_order_independent_and_seeded():
    objects = procedural_objects({"a": 40, "b": 25, "c": 7})
    reference = manifest.stratified_split(objects, seed=3)
    shuffled = objects[:]
    random.Random(1).shuffle(shuffled)
    flipped = [ObjectEntry(e.synset, e.object_id, e.label, "val", e.source) for e in shuffled]
    assert manifest.stratified_split(shuffled, seed=3) == reference
    assert manifest.stratified_split(flipped, seed=3) == reference
    other = manifest.stratified_split(objects, seed=4)
    assert {e.key for e in other if e.split == "val"} != {e.key for e in reference if e.split == "val"}
    assert sum(e.split == "val" for e in other) == sum(e.split == "val" for e in reference)


def test_stratified_split_is_by_object_and_stable_when_objects_are_added():
    objects = procedural_objects({"a": 50})
    before = {e.object_id: e.split for e in manifest.stratified_split(objects[:40])}
    after = {e.object_id: e.split for e in manifest.stratified_split(objects)}
    moved = sum(before[name] != after[name] for name in before)
    assert moved <= 2


def test_stratified_split_rejects_bad_input():
    with pytest.raises(ValueError, match="val_fraction must be strictly between 0 and 1"):
        manifest.stratified_split(procedural_objects({"a": 4}), val_fraction=1.0)
    with pytest.raises(ManifestError, match="duplicated object"):
        manifest.stratified_split(procedural_objects({"a": 4}) * 2)


def test_official_validation_list():
    official = manifest.read_official_val()
    assert len(official) == 10_552
    assert official is not manifest.read_official_val() and official == manifest.read_official_val()
    assert all(e.split == "val" and e.source == "shapenet" for e in official)
    assert {e.synset for e in official} == {s.synset for s in spec.shapenet_synsets()}
    first = official[0]
    assert (first.synset, first.object_id, first.label) == ("02691156", "dc8d9003cde43b66c8727b27ee96a4b7", 0)


def test_official_validation_list_errors(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("synset,object_id,label\n02691156,x,0\n02691156,y,3\n")
    with pytest.raises(
        ManifestError, match=r"val.csv:3: bad label 3 for ShapeNet synset 02691156; expected 0"
    ):
        manifest.read_official_val(path)
    path.write_text("synset,object,label\n")
    with pytest.raises(ManifestError, match=r"val.csv:1: missing column object_id"):
        manifest.read_official_val(path)


def test_split_by_official_list():
    official = manifest.read_official_val()
    listed = official[5]
    objects = [
        entry("02691156", "not-in-the-list", 0, "val"),
        ObjectEntry(listed.synset, listed.object_id, listed.label, "train", "shapenet"),
    ]
    split = manifest.split_by_official_list(objects)
    assert [e.split for e in split] == ["train", "val"]
    custom = manifest.split_by_official_list(objects, official=[objects[0]])
    assert [e.split for e in custom] == ["val", "train"]
