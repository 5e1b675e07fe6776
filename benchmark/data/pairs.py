"""Training samples: one object, two distinct views drawn uniformly at random, and the action between them.

The sampler (`ObjectSampler`) shuffles objects per epoch, shards them across processes and draws the two
views of every sample, from generators seeded by (seed, epoch) and (seed, epoch, rank); it yields
`PairKey(epoch, rank, position, index, first, second)` items that `ViewPairs` reads. DataLoader workers
draw nothing (no random state in workers: they cannot repeat each other's draws), and the samples of an
epoch do not depend on the number of workers or on where a resumed run restarts. Images are only resized
(and normalised on the device by `normalise_views`): no augmentation, as in the published protocol.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset, Sampler

from benchmark.data.views import ObjectViews
from render import spec

#: The rotation part of every action: the unit quaternion (x, y, z, w) of R1^-1 R2.
QUATERNION_DIM = 4
#: action_dim -> the latent values whose differences follow the quaternion (`render.spec.ACTION_FACTORS`,
#: whose sizes `sie_models.ACTION_DIMS` gives); an action is identified by its size.
ACTION_LAYOUTS = {QUATERNION_DIM + len(factors): factors for factors in spec.ACTION_FACTORS.values()}
ROTATION_ACTION_DIM = QUATERNION_DIM + len(spec.ACTION_FACTORS["rotation"])
# Tags keep the two random streams (epoch order, view pairs) apart for the same seed.
ORDER_STREAM = 1
PAIR_STREAM = 2


class PairKey(NamedTuple):
    """One training sample: object `index` with views `first` and `second`, at `position` in the stream of
    process `rank` in `epoch`."""

    epoch: int
    rank: int
    position: int
    index: int
    first: int
    second: int


def relative_action(
    latent1: np.ndarray, latent2: np.ndarray, action_dim: int = ROTATION_ACTION_DIM
) -> np.ndarray:
    """The action from view 1 to view 2, (..., action_dim) float32: the quaternion (x, y, z, w) of R1^-1 R2,
    where R = Rotation.from_euler("xyz", latent[spec.ROTATION]), followed by the differences (view 2 minus
    view 1) of the action's latent values (`ACTION_LAYOUTS`: with action_dim 6 the floor and spot hues).
    latents: (..., spec.LATENT_DIM) float64."""
    if action_dim not in ACTION_LAYOUTS:
        sizes = " or ".join(
            f"{QUATERNION_DIM + len(factors)} ({name})" for name, factors in spec.ACTION_FACTORS.items()
        )
        raise ValueError(f"action_dim must be {sizes}, got {action_dim}")
    latent1, latent2 = np.asarray(latent1, np.float64), np.asarray(latent2, np.float64)
    rotation1 = Rotation.from_euler("xyz", latent1[..., spec.ROTATION])
    rotation2 = Rotation.from_euler("xyz", latent2[..., spec.ROTATION])
    action = (rotation1.inv() * rotation2).as_quat()
    factors = list(ACTION_LAYOUTS[action_dim])
    if factors:
        action = np.concatenate([action, latent2[..., factors] - latent1[..., factors]], axis=-1)
    return action.astype(np.float32)


def draw_view_pairs(seed: int, epoch: int, rank: int, count: int, views: int) -> np.ndarray:
    """(count, 2) int64 pairs of distinct views, each uniform over the views x (views - 1) ordered pairs,
    from a generator seeded by (seed, epoch, rank): row p is the pair of position p of that stream."""
    if views < 2:
        raise ValueError(f"a pair needs at least 2 views per object, the dataset has {views}")
    generator = np.random.default_rng([seed, PAIR_STREAM, epoch, rank])
    first = generator.integers(views, size=count)
    second = (first + generator.integers(1, views, size=count)) % views
    return np.stack([first, second], axis=1)


class ObjectSampler(Sampler[PairKey]):
    """The samples of one epoch for one process, as `PairKey`s (object and views), like DistributedSampler.

    Each epoch shuffles all objects with a generator seeded by (seed, epoch), pads the order by repeating
    its start to a multiple of `world_size`, and gives process `rank` every world_size-th object from
    position `rank`; the views of each position come from `draw_view_pairs(seed, epoch, rank)`.
    `set_epoch(epoch, start)` selects the epoch and skips the first `start` samples of this process (a
    resumed run continues mid-epoch with the same samples).
    """

    def __init__(
        self,
        num_objects: int,
        views: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if num_objects < 1:
            raise ValueError("the dataset has no objects")
        self.num_objects = num_objects
        self.views = views
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    @property
    def per_rank(self) -> int:
        """Samples per process and epoch."""
        return math.ceil(self.num_objects / self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start must be in 0..{self.per_rank}, got {start}")
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> np.ndarray:
        """This process's object indices of `epoch`, (per_rank,) int64."""
        if self.shuffle:
            indices = np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(self.num_objects)
        else:
            indices = np.arange(self.num_objects)
        padded = np.resize(indices, self.per_rank * self.world_size)
        return padded[self.rank :: self.world_size]

    def keys(self, epoch: int) -> list[PairKey]:
        """Every sample of this process in `epoch`, in order."""
        order = self.order(epoch).tolist()
        pairs = draw_view_pairs(self.seed, epoch, self.rank, self.per_rank, self.views).tolist()
        return [
            PairKey(epoch, self.rank, position, index, first, second)
            for position, (index, (first, second)) in enumerate(zip(order, pairs, strict=True))
        ]

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[PairKey]:
        return iter(self.keys(self.epoch)[self.start :])


class EpochsSampler(Sampler[PairKey]):
    """The samples of epochs `first` to `last - 1` (without end when `last` is None) in one stream, so that
    one DataLoader iterator (one set of workers) serves a whole run. Each epoch is cut to its first
    `per_epoch` samples (whole batches); the first epoch starts at sample `start`."""

    def __init__(
        self,
        sampler: ObjectSampler,
        first: int,
        last: int | None,
        per_epoch: int | None = None,
        start: int = 0,
    ) -> None:
        self.sampler = sampler
        self.first, self.last = first, last
        self.per_epoch = sampler.per_rank if per_epoch is None else min(per_epoch, sampler.per_rank)
        if not 0 <= start <= self.per_epoch:
            raise ValueError(f"start must be in 0..{self.per_epoch}, got {start}")
        self.start = start

    def __len__(self) -> int:
        if self.last is None:
            raise TypeError("an endless EpochsSampler has no length")
        return max(0, (self.last - self.first) * self.per_epoch - self.start)

    def __iter__(self) -> Iterator[PairKey]:
        epochs = itertools.count(self.first) if self.last is None else range(self.first, self.last)
        for epoch in epochs:
            start = self.start if epoch == self.first else 0
            yield from self.sampler.keys(epoch)[start : self.per_epoch]


class ViewPairs(Dataset):
    """Pairs of views of the objects of one split.

    Indexed by a `PairKey` (from `ObjectSampler`), or by an object index (then the pair of that object in
    epoch 0 of an unshuffled single-process sampler). An item holds NumPy values: "view1", "view2"
    (S, S, 3) uint8 RGB, "latent1", "latent2" (LATENT_DIM,) float64, "label", "index", "views" (first,
    second).
    `collate` (the DataLoader's collate_fn) stacks items into tensors and adds "action"
    (B, action_dim) float32, computed for the whole batch at once.
    """

    def __init__(
        self, views: ObjectViews, image_size: int | None, seed: int, action_dim: int = ROTATION_ACTION_DIM
    ) -> None:
        relative_action(np.zeros(spec.LATENT_DIM), np.zeros(spec.LATENT_DIM), action_dim)
        self.views = views
        self.image_size = image_size
        self.seed = seed
        self.action_dim = action_dim
        self._index_keys: list[PairKey] | None = None

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key: PairKey | int) -> dict[str, Any]:
        if not isinstance(key, PairKey):
            key = self.key_of_index(int(key))
        image1, image2 = self.views.images(key.index, (key.first, key.second), self.image_size)
        return {
            "view1": image1,
            "view2": image2,
            "latent1": self.views.latent(key.index, key.first),
            "latent2": self.views.latent(key.index, key.second),
            "label": int(self.views.labels[key.index]),
            "index": key.index,
            "views": (key.first, key.second),
        }

    def key_of_index(self, index: int) -> PairKey:
        if self._index_keys is None:
            sampler = ObjectSampler(len(self.views), self.views.views, self.seed, shuffle=False)
            self._index_keys = sampler.keys(0)
        return self._index_keys[index]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """A batch: "view1", "view2" (B, S, S, 3) uint8; "action" (B, action_dim) float32; "latent1",
        "latent2" (B, LATENT_DIM) float64; "label", "index" (B,) int64; "views" (B, 2) int64."""
        latent1 = np.stack([item["latent1"] for item in items])
        latent2 = np.stack([item["latent2"] for item in items])
        return {
            "view1": torch.from_numpy(np.stack([item["view1"] for item in items])),
            "view2": torch.from_numpy(np.stack([item["view2"] for item in items])),
            "action": torch.from_numpy(relative_action(latent1, latent2, self.action_dim)),
            "latent1": torch.from_numpy(latent1),
            "latent2": torch.from_numpy(latent2),
            "label": torch.tensor([item["label"] for item in items], dtype=torch.int64),
            "index": torch.tensor([item["index"] for item in items], dtype=torch.int64),
            "views": torch.tensor([item["views"] for item in items], dtype=torch.int64),
        }


def normalise_views(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) float32 on `device`, scaled to [0, 1] and normalised with
    render.spec.IMAGE_MEAN and IMAGE_STD."""
    images = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(spec.IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous()
