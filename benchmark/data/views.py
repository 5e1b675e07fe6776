"""What every dataset reader offers: one split of objects, their labels, and per view a JPEG and a latent.

`ObjectViews` is the common interface of the folder reader (`benchmark.data.folder`) and the packed
reader (`benchmark.data.packed`); `open_dataset` in `benchmark.data` picks one from a path. Images are
decoded once per view, with PIL's JPEG draft mode when the wanted size is smaller than the stored one.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from render import spec

#: JPEG decoding errors PIL raises for truncated or corrupted data.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


JPEG_ONLY = ("JPEG",)


class DatasetError(Exception):
    """A dataset that cannot be read; the message names the file and the problem."""


#: One class of a dataset: its label (position in the dataset's class list), synset id and name.
ClassInfo = spec.Synset


class ObjectViews:
    """One split of a dataset: N objects with V views each.

    Subclasses set the attributes below and implement `jpeg`, `latent` and `latents`.
    """

    #: where the dataset lives (a folder or an .h5 file)
    path: Path
    #: "train" or "val"
    split: str
    #: "SYNSET/OBJECT_ID" of each object, in split-file order
    keys: list[str]
    #: (N,) int64 class labels
    labels: np.ndarray
    #: views per object
    views: int
    #: every class of the dataset in label order (may include classes absent from this split)
    classes: tuple[ClassInfo, ...]
    #: "folder" or "packed"
    kind: str

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def reencoding(self, size: int | None = None) -> dict[str, Any] | None:
        """How the images read at `size` differ from the rendered ones read at that size: None when they
        are the same pixels, else a description (a pack made with --size re-encodes its JPEGs; a --raw
        pack read at another size than its own resizes stored pixels, not the JPEG)."""
        return None

    def jpeg(self, index: int, view: int) -> bytes:
        """The encoded JPEG of one view."""
        raise NotImplementedError

    def latent(self, index: int, view: int) -> np.ndarray:
        """The (LATENT_DIM,) float64 latent of one view (see render.spec.LATENT_FIELDS)."""
        raise NotImplementedError

    def latents(self, index: int) -> np.ndarray:
        """The (V, 7) float64 latents of every view of one object."""
        return np.stack([self.latent(index, view) for view in range(self.views)])

    def all_latents(self) -> np.ndarray:
        """(N, V, 7) float64 latents of the whole split."""
        return np.stack([self.latents(index) for index in range(len(self))])

    def stored_image(self, index: int, view: int) -> bytes:
        """One view's image as stored: its JPEG file, or a raw pack's pixels."""
        return self.jpeg(index, view)

    def stored_lengths(self, index: int) -> list[int] | None:
        """The byte length of each view's JPEG as stored, from the file system or the pack's index, without
        reading the images; None where the reader stores decoded pixels (a raw pack)."""
        raise NotImplementedError

    def jpegs(self, index: int, views: tuple[int, ...]) -> list[bytes]:
        """The encoded JPEGs of several views of one object."""
        return [self.jpeg(index, view) for view in views]

    def image(self, index: int, view: int, size: int | None = None) -> np.ndarray:
        """The (size, size, 3) uint8 RGB image of one view (stored size when `size` is None)."""
        return decode_jpeg(self.jpeg(index, view), size, self.describe_view(index, view))

    def images(self, index: int, views: tuple[int, ...], size: int | None = None) -> list[np.ndarray]:
        """The images of several views of one object, each decoded once."""
        return [
            decode_jpeg(data, size, self.describe_view(index, view))
            for data, view in zip(self.jpegs(index, views), views, strict=True)
        ]

    def stored_size(self) -> int | None:
        """The side in pixels of the stored images (of the first view: a dataset has one size), None when
        that image cannot be read (the reading of the views names the damage)."""
        try:
            with Image.open(io.BytesIO(self.jpeg(0, 0)), formats=JPEG_ONLY) as image:
                return max(image.size)
        except (OSError, ValueError, DatasetError):
            return None

    def check_image_size(self, size: int) -> None:
        """DatasetError when the stored images are smaller than `size`: training or evaluating at that size
        would only enlarge them."""
        if len(self) == 0:
            return
        stored = self.stored_size()
        if stored is not None and stored < size:
            raise DatasetError(
                f"{self.path}: its images are {stored} px, smaller than the {size} px asked for "
                f"(--image-size); use {stored} px or less, or render (or pack) the dataset at {size} px"
            )

    def describe_view(self, index: int, view: int) -> str:
        """Where a view's image lives, for error messages."""
        return f"{self.path}:{self.keys[index]}/{spec.image_name(view)}"

    def close(self) -> None:
        """Release open files (readers reopen them on demand)."""


def decode_jpeg(data: bytes, size: int | None, origin: str) -> np.ndarray:
    """Decode JPEG bytes into (size, size, 3) uint8 RGB; `origin` names the file in errors.

    For a smaller `size`, the JPEG decoder downscales by a power of two first (draft mode), then a
    bilinear resize reaches the exact size.
    """
    try:
        with Image.open(io.BytesIO(data), formats=JPEG_ONLY) as image:
            if size is not None:
                image.draft("RGB", (size, size))
            if image.mode != "RGB":
                image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.array(image)
    except DECODE_ERRORS as error:  # PIL names the in-memory file: "<_io.BytesIO object at 0x...>"
        said = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(error)) or type(error).__name__
        raise DatasetError(f"{origin}: cannot decode the image ({said})") from None


def resize_pixels(pixels: np.ndarray, size: int | None) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bilinear; unchanged when `size` is None or already met."""
    if size is None or pixels.shape[:2] == (size, size):
        return pixels
    return np.array(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def check_latent(latent: np.ndarray, origin: str) -> np.ndarray:
    """The latent as (LATENT_DIM,) float64; DatasetError naming `origin` if its shape or values are wrong."""
    if latent.shape != (spec.LATENT_DIM,) or not np.issubdtype(latent.dtype, np.floating):
        raise DatasetError(
            f"{origin}: latent of shape {latent.shape} and dtype {latent.dtype}, "
            f"expected ({spec.LATENT_DIM},) floats"
        )
    if not np.isfinite(latent).all():
        raise DatasetError(f"{origin}: latent has non-finite values {latent.tolist()}")
    return latent.astype(np.float64, copy=False)


def worker_error_line(error: BaseException) -> str:
    """The one-line message of an error, also when a DataLoader worker re-raised it with its traceback
    (the message then ends with "module.ErrorClass: message")."""
    message = str(error).strip()
    if "Original Traceback" not in message:
        return message
    last = message.splitlines()[-1]
    prefix, separator, rest = last.partition(": ")
    return rest if separator and re.fullmatch(r"[\w.]+", prefix) else last
