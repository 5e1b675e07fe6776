"""Writing files so that a crash never leaves half of one: a temporary file in the same folder, synced,
then renamed over the target, and the folder's entries synced. Used for every file the toolkit rewrites
(objects.csv, taxonomy.json, run configs, checkpoints, results, leaderboards)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str, sync: bool = True) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    write_bytes_atomically(path, text.encode("utf-8"), sync)


def write_bytes_atomically(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename, both synced to
    disk unless `sync` is False (a file rewritten at every step, cheap to lose); the temporary file is
    removed if anything fails. The file gets the permissions of any new file (0666 less the umask), not
    the owner-only ones of a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        try:
            os.replace(temporary, path)
        except OSError as error:  # name the file being written (a folder in its place), not the temporary
            if error.errno is None:
                raise
            raise OSError(error.errno, error.strerror, str(path)) from None
        if sync:
            sync_folder(path.parent)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames of an atomic write) to disk, where the system allows it, so
    that a machine that crashes after a save comes back with the new file, not the one it replaced."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(descriptor)


def current_umask() -> int:
    """The process's umask, read from /proc where there is one (setting and restoring it, elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
