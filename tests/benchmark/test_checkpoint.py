"""Checkpoints: atomic, checksummed, and a corrupt last.pt falls back to previous.pt."""

import hashlib
import os
from pathlib import Path

import pytest
import torch

from benchmark.train import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from benchmark.train.checkpoint import LAST, PREVIOUS


def _payload(value: float) -> dict:
    return {
        "model": {"weight": torch.full((3, 2), float(value))},
        "epoch": int(value),
        "config": {"method": "sie"},
    }


def test_save_keeps_the_previous_checkpoint_and_load_verifies(tmp_path):
    assert load_checkpoint(tmp_path / "none") is None
    save_checkpoint(tmp_path, _payload(1))
    assert not (tmp_path / PREVIOUS).exists()
    save_checkpoint(tmp_path, _payload(2))
    assert read_checkpoint(tmp_path / PREVIOUS)["epoch"] == 1
    loaded = load_checkpoint(tmp_path)
    assert loaded.path == tmp_path / LAST and loaded.payload["epoch"] == 2
    torch.testing.assert_close(loaded.payload["model"]["weight"], torch.full((3, 2), 2.0))
    assert sorted(path.name for path in tmp_path.iterdir()) == [LAST, PREVIOUS], "no temporary files left"


def test_a_loaded_checkpoint_carries_the_sha256_of_the_bytes_it_was_read_from(tmp_path):
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, _payload(2))
    second = hashlib.sha256((tmp_path / LAST).read_bytes()).hexdigest()
    loaded = load_checkpoint(tmp_path)
    assert loaded.sha256 == second and loaded.payload["epoch"] == 2
    save_checkpoint(tmp_path, _payload(3))  # training saves again after the load
    assert hashlib.sha256((tmp_path / LAST).read_bytes()).hexdigest() != second
    (tmp_path / LAST).unlink()  # last.pt gone: the payload and the hash both come from previous.pt
    fallback = load_checkpoint(tmp_path)
    assert (
        fallback.path == tmp_path / PREVIOUS and fallback.payload["epoch"] == 2 and fallback.sha256 == second
    )


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "delete"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, _payload(2))
    last = tmp_path / LAST
    data = bytearray(last.read_bytes())
    if damage == "flip":
        data[-10] ^= 0xFF
        last.write_bytes(bytes(data))
    elif damage == "truncate":
        last.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "empty":
        last.write_bytes(b"")
    else:
        last.unlink()
    warnings = []
    loaded = load_checkpoint(tmp_path, warn=warnings.append)
    assert loaded.path == tmp_path / PREVIOUS and loaded.payload["epoch"] == 1
    if damage != "delete":
        assert len(warnings) == 1 and str(last) in warnings[0] and "resuming from" in warnings[0]


def test_a_save_after_resuming_from_previous_keeps_it_until_the_new_last_is_in(tmp_path, monkeypatch):
    """last.pt damaged, the run resumed from previous.pt: the next save must not rotate the damaged file
    over the good one (a crash between the two renames would leave no usable checkpoint)."""
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, _payload(2))
    (tmp_path / LAST).write_bytes((tmp_path / LAST).read_bytes()[:-7])
    assert load_checkpoint(tmp_path).payload["epoch"] == 1
    real_replace, renames = os.replace, []

    def crash_before_the_new_last(source, target):
        renames.append(Path(target).name)
        if Path(target).name == LAST:
            raise OSError("killed between the renames")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_before_the_new_last)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(tmp_path, _payload(3))
    assert renames == [LAST] and not (tmp_path / LAST).exists()
    assert load_checkpoint(tmp_path).payload["epoch"] == 1, "previous.pt is still the good checkpoint"
    monkeypatch.setattr(os, "replace", real_replace)
    save_checkpoint(tmp_path, _payload(4))
    save_checkpoint(tmp_path, _payload(5))
    assert (
        read_checkpoint(tmp_path / PREVIOUS)["epoch"] == 4 and load_checkpoint(tmp_path).payload["epoch"] == 5
    )


def test_a_save_reads_back_only_a_last_checkpoint_that_changed_since_this_process_wrote_it(
    tmp_path, monkeypatch
):
    """The file this process wrote is not read and hashed again by the next save; one changed since (here
    a byte flipped in place, same size, later mtime) is verified, and being damaged it is not rotated."""
    from benchmark.train import checkpoint

    real, verified = checkpoint._verified_data, []
    monkeypatch.setattr(
        checkpoint, "_verified_data", lambda raw, path: verified.append(Path(path).name) or real(raw, path)
    )
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, _payload(2))
    assert verified == [] and read_checkpoint(tmp_path / PREVIOUS)["epoch"] == 1
    last = tmp_path / LAST
    data = bytearray(last.read_bytes())
    data[-10] ^= 0xFF
    last.write_bytes(bytes(data))
    stat = last.stat()
    os.utime(last, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    save_checkpoint(tmp_path, _payload(3))
    assert LAST in verified, "the changed file was verified"
    assert read_checkpoint(tmp_path / PREVIOUS)["epoch"] == 1, "the damaged file did not replace previous.pt"
    assert load_checkpoint(tmp_path).payload["epoch"] == 3


def test_no_usable_checkpoint_names_every_file(tmp_path):
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, _payload(2))
    for name in (LAST, PREVIOUS):
        data = bytearray((tmp_path / name).read_bytes())
        data[-1] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(tmp_path)
    message = str(raised.value)
    assert f"{tmp_path / LAST}: checksum mismatch" in message
    assert f"{tmp_path / PREVIOUS}: checksum mismatch" in message
    (tmp_path / "other.pt").write_bytes(b"PK\x03\x04 a torch.save zip")
    with pytest.raises(CheckpointError, match="not a 3die checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_a_checkpoint_without_the_required_entries_is_unusable_like_a_damaged_one(tmp_path):
    save_checkpoint(tmp_path, _payload(1))
    save_checkpoint(tmp_path, {"epoch": 2})  # verifies, but is no training checkpoint
    warnings = []
    loaded = load_checkpoint(tmp_path, warn=warnings.append, required=("config", "model"))
    assert loaded.path == tmp_path / PREVIOUS and loaded.payload["epoch"] == 1
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{tmp_path / LAST}: not a training checkpoint (no config, model)")
    save_checkpoint(tmp_path, [1, 2])  # last.pt holds a list, previous.pt the payload without a model
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(tmp_path, required=("config", "model"))
    assert f"{tmp_path / LAST}: not a training checkpoint (no config, model)" in str(raised.value)
    assert f"{tmp_path / PREVIOUS}: not a training checkpoint (no config, model)" in str(raised.value)
