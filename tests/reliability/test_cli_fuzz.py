"""Fuzzing the command line and the file readers with hypothesis: any input gives a clear error, never a
traceback.

Commands are fuzzed where they cannot start real work: `3die render` always ends with `--limit 0` (the
options are parsed, the source listed and the folder prepared, no object rendered), `3die train` gets data
that is not a usable dataset, except when its method options are fuzzed: then a tiny synthetic dataset and
the tiny preset cut to one epoch of two steps of 16 px images, so that the method is built and trained.
"""

import io
import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from benchmark.cli import main
from benchmark.data import DatasetError
from benchmark.data.folder import read_split_files
from benchmark.leaderboard import COLUMNS, LeaderboardError, read_rows
from benchmark.train import CheckpointError, ConfigError, parse_method_options, read_checkpoint
from render import launch, spec, writer
from render.check import check_dataset
from render.launch import Shard
from render.manifest import ManifestError, read_objects_csv
from render.sources import SourceError, read_images_npy
from sie_models import list_methods, method_defaults

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmark"))
from synthetic_data import write_dataset

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: Whole commands cost more per example.
FUZZ_COMMAND = settings(FUZZ, max_examples=30)

#: Values that options meet in the wild: numbers of every sign and size, paths, names, empty strings.
VALUES = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["", "0", "-1", "1/2", "3/2", "a/b", "x", "chair,mug", "chair,,", "published", "ood", "gpu"]
    ),
    st.sampled_from(["sie", "vicreg", "tiny", "paper", "auto", "cuda", "bfloat16", "KEY=1", "=", "nan"]),
    st.text(max_size=12),
)
RENDER_OPTIONS = [
    "--views", "--size", "--quality", "--rotation", "--seed", "--shard", "--workers", "--device", "--classes",
    "--per-class", "--up-axis", "--recycle-every", "--objects", "--shapenet-dir", "--mesh-dir", "--jobs",
]  # fmt: skip
TRAIN_OPTIONS = [
    "--method", "--preset", "--epochs", "--batch-size", "--lr", "--weight-decay", "--image-size", "--width",
    "--workers", "--seed", "--device", "--amp-dtype", "--log-every", "--option",
]  # fmt: skip


def options(names: list[str]) -> st.SearchStrategy[list[str]]:
    """Up to 6 (option, value) pairs, flattened, with the odd stray word."""
    pair = st.tuples(st.sampled_from(names), VALUES).map(list)
    stray = st.sampled_from(["--retry-failed", "--no-amp", "--amp", "--skip-bad-objects", "--what", "-h"])
    return st.lists(st.one_of(pair, stray.map(lambda word: [word])), max_size=6).map(
        lambda chunks: [word for chunk in chunks for word in chunk]
    )


def assert_clean(result, report: str | None = None) -> None:
    """Exit 0, 1 (an `Error:` line, or `report` for a command that reports its findings) or 2 (a usage
    error, with its `Error:` line); never an exception escaping the command."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code:
        reported = report is not None and report in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert errors or reported, result.output


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    """A folder with files that fuzzed options may name: an empty folder, a text file, a broken CSV."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an objects file\n")
    (root / "objects.csv").write_text("synset,object_id,label,split,source\n0,x,zero,test,mars\n")
    return root


@FUZZ_COMMAND
@given(arguments=options(RENDER_OPTIONS))
def test_render_options_never_raise(playground, arguments):
    """Every step before Blender runs: options, the source listed, the folder prepared, the split files
    written; the render itself (`_render_with_workers`) renders nothing here."""
    paths = {"--objects": "notes.txt", "--shapenet-dir": "empty", "--mesh-dir": "empty"}
    arguments = [str(playground / paths[word]) if word in paths.values() else word for word in arguments]
    with tempfile.TemporaryDirectory() as out, mock.patch.object(launch, "_render_with_workers"):
        assert_clean(CliRunner().invoke(main, ["render", "--out", out, *arguments, "--limit", "1"]))


@FUZZ_COMMAND
@given(arguments=options(TRAIN_OPTIONS), data=st.sampled_from(["empty", "notes.txt", "objects.csv"]))
@example(arguments=["--method", ""], data="empty")  # an empty method name once escaped as a traceback
def test_train_options_never_raise(playground, arguments, data):
    with tempfile.TemporaryDirectory() as out:
        command = ["train", "--method", "sie", "--data", str(playground / data), "--out", out, *arguments]
        assert_clean(CliRunner().invoke(main, command))


#: Options that `3die train` sets from its own settings, and names no method has.
RESERVED_OPTIONS = ("image_size", "width", "num_classes")
STRANGE_OPTION_NAMES = st.one_of(
    st.sampled_from([*RESERVED_OPTIONS, "temperature ", "Sigma", "", "projector.width"]), st.text(max_size=8)
)
#: JSON values of every type, small enough that a network built from them stays tiny, and plain words.
OPTION_VALUES = st.one_of(
    st.integers(-2, 48).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(json.dumps),
    st.lists(st.integers(-1, 48), min_size=1, max_size=3).map(lambda widths: "-".join(map(str, widths))),
    st.sampled_from(
        ["true", "false", "null", "[1,2]", "{}", '"0.1"', "mlp", "deep", "small", "rotation+color"]
    ),
    st.text(max_size=8),
)


@st.composite
def method_options(draw, method: str) -> str:
    """NAME=VALUE: mostly an option of `method`, with a value near its default half of the time (a small
    projector rather than the paper's), else of any type, so that about a quarter of the commands build and
    train the method."""
    defaults = method_defaults(method)
    own = st.sampled_from(sorted(set(defaults) - set(RESERVED_OPTIONS)))
    name = draw(st.one_of(own, STRANGE_OPTION_NAMES) if draw(st.booleans()) else own)
    default = "32-32" if name == "projector" else defaults.get(name)
    near = [json.dumps(default)]
    if isinstance(default, int | float) and not isinstance(default, bool):
        near += [json.dumps(default * 2), json.dumps(default / 2)]
    value = draw(st.sampled_from(near) if draw(st.booleans()) else OPTION_VALUES)
    return f"{name}={value}"


#: One epoch of two steps: 9 training objects of the synthetic set, batches of 4, 16 px.
QUICK_TRAIN = [
    "--preset",
    "tiny",
    "--epochs",
    "1",
    "--image-size",
    "16",
    "--batch-size",
    "4",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A valid dataset: 3 classes x (3 train + 1 val) objects of 4 views of 16 px."""
    return write_dataset(tmp_path_factory.mktemp("fuzz-data") / "data", views=4, size=16).root


@settings(FUZZ, max_examples=24)
@given(
    method=st.sampled_from(list_methods()),
    data=st.data(),
)
def test_train_method_options_never_raise(tiny_dataset, method, data):
    items = data.draw(st.lists(method_options(method), min_size=1, max_size=2))
    options = [f"--option={item}" for item in items]
    with tempfile.TemporaryDirectory() as out:
        run = Path(out) / "run"
        command = ["train", "--method", method, "--data", str(tiny_dataset), "--out", str(run), *options]
        result = CliRunner().invoke(main, [*command, *QUICK_TRAIN])
        assert_clean(result)
        event("trained" if result.exit_code == 0 else "refused")  # --hypothesis-show-statistics
        if result.exit_code and "non-finite loss" not in result.output:  # refused before anything was written
            assert not run.exists(), result.output


@FUZZ
@given(
    arguments=st.lists(st.sampled_from(["--workers", "0", "-3", "x", "--quick", "--help", "."]), max_size=4)
)
def test_check_options_never_raise(playground, arguments):
    result = CliRunner().invoke(main, ["check", str(playground / "empty"), *arguments])
    assert_clean(result, report="no objects: neither objects.csv")


@FUZZ
@given(name=st.text(max_size=20))
def test_methods_with_any_name_never_raise(name):
    assert_clean(CliRunner().invoke(main, ["methods", name]))


# --- readers --------------------------------------------------------------------------------------------
CSV_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.lists(
            st.sampled_from(["02691156", "x", "", "0", "-1", "9" * 30, "train", "val", "procedural", '"'])
        ).map(",".join),
        max_size=6,
    ).map(lambda rows: "synset,object_id,label,split,source\n" + "\n".join(rows)),
)


@FUZZ
@given(text=CSV_TEXT)
def test_objects_csv_reader_raises_only_manifest_errors(tmp_path, text):
    _read_text(tmp_path / "objects.csv", text, read_objects_csv, ManifestError)


def _read_text(path, text, reader, kind):
    """`reader(path)` of a file holding `text`: its result, or None when it raised `kind` with a message
    naming the file; any other exception fails the test."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return reader(path)
    except kind as error:
        assert str(path) in str(error)
        return None


CELL = st.sampled_from(["sie", "", "1", "-2.5", "nan", "x", "1e400", '"', ","])
LEADERBOARD_TEXT = st.one_of(
    st.text(max_size=300),
    st.tuples(
        st.lists(st.sampled_from([*COLUMNS, "flops", ""]), min_size=1, max_size=8, unique=True),
        st.lists(st.lists(CELL, max_size=8)),
    ).map(lambda table: "\n".join([",".join(["method", *table[0]]), *(",".join(row) for row in table[1])])),
)


@FUZZ
@given(text=LEADERBOARD_TEXT)
def test_leaderboard_csv_reader_raises_only_leaderboard_errors(tmp_path, text):
    rows = _read_text(tmp_path / "board.csv", text, read_rows, LeaderboardError)
    if rows is not None:
        event("read")
        assert all(set(row) == set(COLUMNS) for row in rows)


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


NPY = st.one_of(
    st.binary(max_size=200),
    st.lists(st.text(max_size=12), max_size=5).map(lambda items: npy_bytes(np.array(items, dtype=str))),
    st.lists(st.integers(-5, 5), max_size=5).map(lambda items: npy_bytes(np.array(items))),
    st.binary(max_size=200).map(lambda data: npy_bytes(np.array(["/a/b/"]))[:-3] + data[:3]),
)


@FUZZ
@given(images=NPY, labels=NPY)
def test_split_file_readers_raise_only_dataset_errors(tmp_path, images, labels):
    (tmp_path / "train_images.npy").write_bytes(images)
    (tmp_path / "train_labels.npy").write_bytes(labels)
    with _only(DatasetError):
        read_split_files(tmp_path, "train")
    with _only(SourceError):
        read_images_npy(tmp_path / "train_images.npy")
    report = check_dataset(tmp_path)  # never raises: every problem is in the report
    assert report.lines()[-1].startswith(str(tmp_path))


@FUZZ
@given(text=st.text(max_size=200))
def test_failures_file_reader_raises_only_its_error(tmp_path, text):
    (tmp_path / spec.FAILURES_NAME).write_text(text, encoding="utf-8", errors="surrogatepass")
    with _only(writer.DatasetMismatchError):
        writer.read_failures(tmp_path)


HEADER = st.builds(
    lambda magic, version, digest, size: b"%s %s sha256=%s bytes=%s\n" % (magic, version, digest, size),
    st.sampled_from([b"3die-checkpoint", b"3die", b""]),
    st.sampled_from([b"1", b"2", b"x", b"\xff"]),
    st.sampled_from([b"00", b"\xfe\xff", b""]),
    st.sampled_from([b"0", b"12", b"-1", b"lots", b"\xff", b""]),
)


@FUZZ
@given(header=HEADER, payload=st.binary(max_size=64))
def test_checkpoint_reader_raises_only_checkpoint_errors(tmp_path, header, payload):
    path = tmp_path / "last.pt"
    path.write_bytes(header + payload)
    with _only(CheckpointError):
        read_checkpoint(path)


@FUZZ
@given(items=st.lists(st.text(max_size=10), max_size=4), shard=st.text(max_size=8))
def test_option_parsers_raise_only_value_errors(items, shard):
    with _only(ConfigError):
        json.dumps(parse_method_options(tuple(items)))
    with _only(ValueError):
        Shard.parse(shard)


class _only:
    """A context that lets the block succeed or raise `kind` (with a message), and fails on anything else."""

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            return False
        assert issubclass(kind, self.kind), f"{kind.__name__} escaped: {error}"
        assert str(error), "an error without a message"
        return True
