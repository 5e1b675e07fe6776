"""Atomic, checksummed checkpoints: RUN/checkpoints/last.pt and the one before it, previous.pt.

A checkpoint file is one header line, `3die-checkpoint 1 sha256=HEX bytes=N`, followed by the N bytes of
`torch.save(payload)`. Saving writes a temporary file, syncs it, moves last.pt to previous.pt and renames
the temporary file to last.pt (`os.replace`), so a killed process leaves either checkpoint readable (and a
temporary file, which the next save deletes).
Loading verifies the checksum and falls back to previous.pt when last.pt is missing, truncated or corrupt;
it reads the file once and returns the sha256 of those bytes with the payload, so a save replacing last.pt
meanwhile never pairs one checkpoint's weights with another's hash.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from render.files import sync_folder

MAGIC = b"3die-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"
PREVIOUS = "previous.pt"

# (inode, size, mtime_ns) of each last.pt this process wrote, by path: a file that still has them is the
# verified file this process wrote, so the next save need not read and hash it again (hundreds of MB at
# the paper's settings, read back from a network file system every epoch otherwise).
_WRITTEN: dict[Path, tuple[int, int, int]] = {}


class CheckpointError(Exception):
    """No usable checkpoint; the message names the files and what is wrong with them."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A verified checkpoint: its payload, the file it came from and the sha256 (hex) of the bytes read
    from that file, header line included: what identifies the payload even when a later save has replaced
    the file since."""

    payload: dict[str, Any]
    path: Path
    sha256: str


def save_checkpoint(folder: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` (tensors, numbers, strings, lists and dicts of them) as folder/last.pt, keeping the
    former last.pt as previous.pt. Returns the path of last.pt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    header = b"%s %d sha256=%s bytes=%d\n" % (
        MAGIC,
        FORMAT_VERSION,
        hashlib.sha256(data).hexdigest().encode(),
        len(data),
    )
    for stale in folder.glob(f".{LAST}.tmp-*"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    temp = folder / f".{LAST}.tmp-{os.getpid()}"
    try:
        with temp.open("wb") as handle:
            handle.write(header)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        last = folder / LAST
        if _intact(last):
            os.replace(last, folder / PREVIOUS)
        else:  # damaged (the run resumed from previous.pt): previous.pt stays until the new last.pt is in
            last.unlink(missing_ok=True)
        os.replace(temp, last)
        sync_folder(folder)
        _WRITTEN[last.absolute()] = _identity(last)
    finally:
        temp.unlink(missing_ok=True)
    return folder / LAST


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _intact(path: Path) -> bool:
    """Whether the checkpoint file's header, size and checksum are right (its payload is not loaded);
    a file this process wrote and nothing has replaced or changed since is taken as it was written."""
    try:
        if _WRITTEN.get(path.absolute()) == _identity(path):
            return True
    except OSError:
        return False
    try:
        _verified_data(path.read_bytes(), path)
    except (OSError, CheckpointError):
        return False
    return True


def load_checkpoint(
    folder: Path, warn: Callable[[str], None] | None = None, required: tuple[str, ...] = ()
) -> LoadedCheckpoint | None:
    """The newest verified checkpoint of `folder` (last.pt, else previous.pt), or None when there is none.

    A checkpoint whose payload lacks one of the `required` keys is unusable like a damaged one. `warn`
    receives a line when last.pt is unusable and previous.pt is used instead. Raises CheckpointError when
    checkpoint files exist but none is usable.
    """
    folder = Path(folder)
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            payload, sha256 = read_checkpoint_file(path)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        missing = [key for key in required if not isinstance(payload, dict) or key not in payload]
        if missing:
            problems.append(f"{path}: not a training checkpoint (no {', '.join(missing)})")
            continue
        if problems and warn is not None:
            warn(f"{problems[0]}; resuming from {path} instead")
        return LoadedCheckpoint(payload, path, sha256)
    if problems:
        raise CheckpointError(
            "; ".join(problems) + " (no usable checkpoint: delete the checkpoints folder to start again)"
        )
    return None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The verified payload of one checkpoint file; CheckpointError naming the file otherwise."""
    return read_checkpoint_file(path)[0]


def read_checkpoint_file(path: Path) -> tuple[dict[str, Any], str]:
    """The verified payload of one checkpoint file and the sha256 (hex) of the file's bytes it was read
    from, read once (a save replacing the file meanwhile cannot mix two checkpoints); CheckpointError
    naming the file otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    data = _verified_data(raw, path)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a verified file that is no torch.save payload: torch raises many kinds
        raise CheckpointError(f"{path}: the payload does not load ({type(error).__name__})") from None
    return payload, hashlib.sha256(raw).hexdigest()


def _verified_data(raw: bytes, path: Path) -> bytes:
    """The payload bytes of a checkpoint file's bytes `raw` after its header line, checked against the
    header's size and sha256; CheckpointError naming `path` otherwise."""
    header, newline, data = raw.partition(b"\n")
    parts = header.split(b" ")
    if not newline or len(parts) != 4 or parts[0] != MAGIC:
        raise CheckpointError(f"{path}: not a 3die checkpoint (no header line)")
    if parts[1] != str(FORMAT_VERSION).encode():
        version = parts[1].decode(errors="replace")
        raise CheckpointError(f"{path}: checkpoint format {version}, expected {FORMAT_VERSION}")
    expected_sha = parts[2].removeprefix(b"sha256=").decode(errors="replace")
    size = parts[3].removeprefix(b"bytes=")
    if not size.isdigit():
        raise CheckpointError(f"{path}: damaged header line (bytes={size.decode(errors='replace')})")
    expected_bytes = int(size)
    if len(data) != expected_bytes:
        raise CheckpointError(f"{path}: truncated ({len(data)} of {expected_bytes} bytes)")
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt)")
    return data
