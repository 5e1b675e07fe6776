"""`3die evaluate`: every frozen-backbone evaluation of a trained run, written to RUN/results.json.

`evaluate_run(run_dir)` loads the run's newest checkpoint (`benchmark.train.load_trained`), opens the train
and validation splits of its dataset (or of `data`), checks every object as training does and refuses a
dataset with unusable objects, or leaves them out with `skip_bad_objects` (`3die evaluate
--skip-bad-objects`: they are listed in results.json and the dataset hash covers only the objects
evaluated), extracts or reuses the cached features (`benchmark.evaluate.features`) and runs the chosen
tasks:

- classification: a linear probe per representation part (`method.parts`: "full", and "inv"/"equi" for
  split methods): top1, top5, mean_class_acc;
- rotation: an MLP on pairs of views per part: r2 (pooled over the quaternion, as published), angle_deg;
- colour: the same for the floor and spot hue differences: r2, r2_floor, r2_spot;
- retrieval (methods with a predictor): pre, emb_dist, mrr, hit1, hit2, hit5, hit10
  (`benchmark.evaluate.retrieval`).

results.json is rewritten after every task, so an interrupted evaluation keeps the tasks it finished, and
a later call for other tasks adds to it as long as the checkpoint and dataset are the same. An evaluation
holds RUN/.evaluate.lock (`render.locks`) from the moment its checkpoint is loaded to its last write, so
two evaluations of one run (`--tasks classification` and `--tasks retrieval` started together, say) take
turns: the second says once that it waits, then reuses the features the first extracted and adds its tasks
to the first's results.json. The checkpoint recorded (sha256, and the feature cache's key) is the bytes the
weights were loaded from, even when training has saved a newer last.pt since.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.data import (
    DatasetError,
    ObjectViews,
    dataset_manifest,
    rendering_settings,
    worker_error_line,
)
from benchmark.data.packed import SkippedObject
from benchmark.data.validate import (
    counted_per_split,
    damaged_image_remedy,
    skipping_line,
    usable_splits,
)
from benchmark.evaluate.features import (
    FEATURES_DIR,
    SplitFeatures,
    features_key,
    split_features,
    use_cache,
)
from benchmark.evaluate.probes import (
    ProbeDivergedError,
    ProbeSettings,
    classification_probe,
    colour_probe,
    rotation_probe,
)
from benchmark.evaluate.retrieval import predict_views, retrieval_scores, view_zero_queries
from benchmark.provenance import code_version, cpu_description
from benchmark.train import load_trained
from benchmark.train.distributed import resolve_device
from benchmark.train.loop import dataset_fingerprint
from render import spec
from render.files import write_bytes_atomically, write_text_atomically
from render.locks import exclusive_lock
from sie_models import Method

TASKS = ("classification", "rotation", "colour", "retrieval")
PROBE_TASKS = ("classification", "rotation", "colour")
TASK_ALIASES = {"color": "colour"}
#: Probe epochs of the published protocol, the defaults of `3die evaluate`: 300 for every probe, as the
#: published SIE README runs eval_classification.py, eval_angle_prediction.py and eval_color_prediction.py
#: (`--epochs 300`; the scripts' own default, 50, is not what the paper's commands use).
PAPER_PROBE_EPOCHS = dict.fromkeys(PROBE_TASKS, 300)
RESULTS_NAME = "results.json"
RESULTS_FORMAT = "3die-results/1"
#: The lock file an evaluation holds in its run folder.
LOCK_NAME = ".evaluate.lock"
#: Objects per block when checking cached features for NaN and infinite values.
FINITE_CHECK_OBJECTS = 1024
#: Objects per split whose latents `dataset_identity` hashes, and whose images `images_digest` does.
SAMPLE_OBJECTS = 16


class EvaluationError(Exception):
    """An evaluation that cannot run; the message names the run or dataset and what to do."""


@dataclass(frozen=True)
class EvaluationSettings:
    """What to evaluate and how: tasks, probe epochs per probe task, the probes' optimisation
    (`ProbeSettings`), feature extraction (images per batch, DataLoader workers) and the device."""

    tasks: tuple[str, ...] = TASKS
    epochs: dict[str, int] = field(default_factory=lambda: dict(PAPER_PROBE_EPOCHS))
    samples_per_object: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden: int = 1024
    val_pairs: int = 10
    seed: int = 0
    extract_batch: int = 256
    workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or not self.tasks:
            given = ", ".join(unknown) or "(none given)"
            raise ValueError(f"unknown tasks {given}; choose from {', '.join(TASKS)}")
        for task in PROBE_TASKS:
            self.probe(task)
        if not 0 <= self.seed < 2**32:  # SeedSequence: larger seeds alias smaller ones
            raise ValueError(f"seed must be from 0 to 2^32 - 1, got {self.seed}")
        if self.workers < 0:
            raise ValueError(f"workers must be at least 0, got {self.workers}")
        if self.extract_batch < 1:
            raise ValueError(f"extract batch must be at least 1, got {self.extract_batch}")

    def probe(self, task: str) -> ProbeSettings:
        """The probe settings of one probe task."""
        return ProbeSettings(
            epochs=self.epochs.get(task, PAPER_PROBE_EPOCHS[task]),
            samples_per_object=self.samples_per_object,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            hidden=self.hidden,
            val_pairs=self.val_pairs,
            seed=self.seed,
        )

    def task_settings(self, task: str) -> dict[str, Any]:
        """The settings that shaped one task's numbers, as recorded in results.json."""
        if task == "retrieval":
            return {"queries": "view 0 -> views 1..V-1", "similarity": "cosine", "ties": "pessimistic"}
        settings = asdict(self.probe(task))
        if task == "classification":
            del settings["hidden"], settings["val_pairs"]
        return settings


def parse_tasks(text: str) -> tuple[str, ...]:
    """ "classification,rotation" -> ("classification", "rotation"); "color" is read as "colour"."""
    tasks = [TASK_ALIASES.get(task.strip(), task.strip()) for task in text.split(",") if task.strip()]
    return tuple(dict.fromkeys(tasks))


def parse_epochs(text: str | None, base: Mapping[str, int] = PAPER_PROBE_EPOCHS) -> dict[str, int]:
    """Probe epochs: None -> `base` (default: the published ones, `PAPER_PROBE_EPOCHS`); "20" -> 20 for
    every probe; "classification=100,rotation=20" -> those two, `base`'s for the others (an empty base
    gives only the tasks named)."""
    epochs, named = dict(base), set()
    if text is None:
        return epochs
    text = text.strip()
    if spec.is_decimal(text):
        return dict.fromkeys(PROBE_TASKS, int(text))
    for item in text.split(","):
        task, separator, value = item.partition("=")
        task, value = TASK_ALIASES.get(task.strip(), task.strip()), value.strip()
        if not separator or task not in PROBE_TASKS or not spec.is_decimal(value):
            raise ValueError(
                f"cannot read epochs {text!r} (at {item.strip()!r}): give N for every probe, or TASK=N,... "
                f"with TASK in {', '.join(PROBE_TASKS)}"
            )
        if task in named:
            raise ValueError(f"epochs {text!r} name {task} more than once; give each task once")
        named.add(task)
        epochs[task] = int(value)
    return epochs


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    settings: EvaluationSettings | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    train_seconds: float | None = None,
    skip_bad_objects: bool = False,
    recompute: bool = False,
) -> dict[str, Any]:
    """Evaluate a trained run; writes and returns RUN/results.json (see the module docstring; scores that
    are not finite numbers are null in both).

    data: the dataset to evaluate on (default: the one the run trained on). train_seconds: the training
    time to record when the run's config lacks `train_seconds` (runs trained before it was recorded).
    skip_bad_objects: evaluate without the objects whose files are unusable (one line through `echo` says
    how many per split) instead of refusing the dataset. A task whose results.json entry was computed
    from the same checkpoint, dataset, settings, code version and device is kept as it is (one line
    through `echo`) unless `recompute`. Another evaluation of the same run holding its
    lock is waited for (one line through `echo`).
    Raises CheckpointError (no checkpoint), DatasetError (unreadable data, unusable objects) or
    EvaluationError.
    """
    settings = settings or EvaluationSettings()
    say = echo or (lambda line: None)
    run = Path(run_dir)
    try:
        device = resolve_device(settings.device, 0)
    except RuntimeError as error:
        raise EvaluationError(f"{error}; use --device cpu") from None
    method, config = load_trained(run, device)
    with evaluation_lock(run, say):
        return _evaluate_locked(
            run,
            method,
            config,
            device,
            data,
            settings,
            progress,
            say,
            train_seconds,
            skip_bad_objects,
            recompute,
        )


@contextlib.contextmanager
def evaluation_lock(run: Path, echo: Callable[[str], None]) -> Iterator[None]:
    """Hold the run's evaluation lock (RUN/.evaluate.lock) for the block, after one line through `echo`
    when another evaluation of the run holds it and this one waits for it. EvaluationError when the run
    folder cannot be locked (not writable)."""
    lock = run / LOCK_NAME

    def waiting(holder: str) -> None:
        echo(f"{run}: waiting for the other evaluation of this run ({holder or lock}) to finish")

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(lock, on_wait=waiting))
        except OSError as error:
            raise EvaluationError(
                f"{lock}: cannot lock the run folder ({error.strerror or error}); make it writable"
            ) from None
        yield


def _evaluate_locked(
    run: Path,
    method: Method,
    config: dict[str, Any],
    device: torch.device,
    data: str | Path | None,
    settings: EvaluationSettings,
    progress: bool,
    say: Callable[[str], None],
    train_seconds: float | None,
    skip_bad_objects: bool,
    recompute: bool,
) -> dict[str, Any]:
    """`evaluate_run` once the run's checkpoint is loaded and its lock held."""
    data_path = Path(data) if data is not None else Path(config["data"])
    if data is None and not data_path.exists():
        raise EvaluationError(
            f"{run}: trained on {data_path}, which is not there; give the dataset with --data"
        )
    (train_views, val_views), skipped = usable_splits(
        data_path, ["train", "val"], skip_bad_objects, settings.workers, command="evaluate"
    )
    if skipped:
        counted = counted_per_split([train_views, val_views], skipped)
        say(
            f"{skipping_line(data_path, counted, skipped[0].problem)}; {run / RESULTS_NAME} lists them "
            "(dataset.skipped_objects)"
        )
    check_splits(data_path, train_views, val_views, settings.tasks)
    try:
        val_views.check_image_size(config["image_size"])
    except DatasetError as error:
        raise EvaluationError(f"{error}; the run {run} was trained at {config['image_size']} px") from None
    dataset = dataset_identity(data_path, train_views, val_views, skipped)
    trained = config["checkpoint"]  # sha256: of the bytes loaded, whatever training has saved since
    checkpoint = {"path": str(Path(trained["path"]).resolve()), "sha256": trained["sha256"]}
    key = features_key(
        checkpoint["sha256"],
        dataset["hash"],
        config["image_size"],
        images_digest(train_views, val_views),
    )
    header = results_header(run, config, dataset, checkpoint, key, device, train_seconds)
    previous = read_results(run / RESULTS_NAME, say)
    results = continue_results(previous, header, run, say)
    tasks = [task for task in settings.tasks if recompute or not up_to_date(results, task, settings)]
    for task in settings.tasks:
        if task not in tasks:
            kept = f"skipped: {results['skipped'][task]}; " if task in results["skipped"] else ""
            say(
                f"{run}: {task} {kept}kept from {RESULTS_NAME} (same checkpoint, data, settings and code; "
                "--recompute runs it again)"
            )
    if not tasks:  # nothing evaluated: the evaluation time stays that of the scores
        results["evaluation"]["evaluated_at"] = previous["evaluation"]["evaluated_at"]
        if json.loads(json.dumps(results)) != previous:  # e.g. the dataset given by another path
            write_results(run / RESULTS_NAME, results)
        return results

    started = time.perf_counter()
    folder = run / FEATURES_DIR / key
    results["features"]["extracted_with"] = use_cache(folder, evaluated_with(results), recompute, say)
    extract = dict(
        method=method,
        folder=folder,
        image_size=config["image_size"],
        device=device,
        batch_images=settings.extract_batch,
        workers=settings.workers,
        progress=progress,
        echo=say,
    )
    try:
        val = split_features(views=val_views, embeddings=method.has_predictor, **extract)
        probes = set(tasks) & set(PROBE_TASKS)
        train = split_features(views=train_views, **extract) if probes else None
    except DatasetError as error:  # a file the check passed (it reads JPEG ends only), or damaged since
        raise DatasetError(f"{worker_error_line(error)}; {damaged_image_remedy(data_path)}") from None
    for split, features in (("val", val), ("train", train)):
        check_finite_features(features, split, run, checkpoint["path"])
    results["seconds"]["features"] = round(time.perf_counter() - started, 3)
    features = FeatureTensors(train, val, device)
    for task in tasks:
        started = time.perf_counter()
        if task in PROBE_TASKS:
            total, unit = settings.probe(task).epochs * len(method.parts), "epoch"
        else:  # retrieval: PRE's nearest-neighbour search over every prediction (none without a predictor)
            total = val.latents.shape[0] * (val.latents.shape[1] - 1) if method.has_predictor else 0
            unit = "query"
        one_class = task == "classification" and train_views.num_classes < 2
        total = 0 if one_class else total
        with tqdm(total=total, desc=task, unit=unit, unit_scale=unit == "query", disable=not progress) as bar:
            try:
                metrics = (
                    None  # one class: every probe scores 100 %, a figure that says nothing
                    if one_class
                    else run_task(task, method, features, train_views.num_classes, settings, bar.update)
                )
            except ProbeDivergedError as error:
                raise EvaluationError(
                    f"{run}: the {task} probe stopped: {error}; evaluate with a lower probe learning rate "
                    f"than {settings.lr} (`3die evaluate {run} --lr ...`; {RESULTS_NAME} keeps the results "
                    "it holds)"
                ) from None
        if metrics is None:
            results["skipped"][task] = (
                f"the dataset has {train_views.num_classes} class; classification needs 2 or more"
                if one_class
                else f"method {config['method']} has no predictor"
            )
            results["metrics"].pop(task, None)
        else:
            results["metrics"][task] = metrics
            results["skipped"].pop(task, None)
        results["settings"][task] = settings.task_settings(task)
        results["seconds"][task] = round(time.perf_counter() - started, 3)
        results["evaluated"][task] = evaluated_with(results)
        write_results(run / RESULTS_NAME, results)
        if metrics is None:
            say(f"{run}: {task} skipped: {results['skipped'][task]}")
        else:
            say(f"{run}: {task} done in {results['seconds'][task]:.0f} s")
    return _finite(results)  # as written: a score that is not a number (a constant target's R^2) is null


def evaluated_with(results: dict[str, Any]) -> dict[str, str]:
    """What a task's numbers were computed with besides its settings: the code version, the device and
    its hardware, and torch's version."""
    evaluation = results["evaluation"]
    return {
        "code_version": evaluation["code_version"],
        "device": evaluation["device"],
        "hardware": evaluation["hardware"],
        "torch": torch.__version__,
    }


def up_to_date(results: dict[str, Any], task: str, settings: EvaluationSettings) -> bool:
    """Whether `results` (continued from results.json: same checkpoint, dataset and image size) already
    hold `task` computed with these settings, this code version, device and torch. Only for code that
    names its commit and does not differ from it (`code_version`: "+gCOMMIT", no ".dirty"): other code
    may have changed since the task ran."""
    version = results["evaluation"]["code_version"]
    return (
        "+g" in version
        and not version.endswith(".dirty")
        and (task in results["metrics"] or task in results["skipped"])
        and results["settings"].get(task) == settings.task_settings(task)
        and results["evaluated"].get(task) == evaluated_with(results)
    )


class FeatureTensors:
    """The cached representations as tensors on the evaluation device, copied into memory once, on first
    use; `train`/`val` are the `SplitFeatures` themselves (latents, labels, embeddings)."""

    def __init__(self, train: SplitFeatures | None, val: SplitFeatures, device: torch.device) -> None:
        self.train, self.val, self.device = train, val, device
        self._tensors: dict[str, torch.Tensor] = {}

    def representations(self, split: str) -> torch.Tensor:
        """(N, V, R) float32 representations of "train" or "val"."""
        if split not in self._tensors:
            array = getattr(self, split).representations
            self._tensors[split] = torch.from_numpy(np.array(array, dtype=np.float32)).to(self.device)
        return self._tensors[split]

    def release(self) -> None:
        """Free the device copies (made again on the next use): retrieval needs none of them, and at the
        paper's size they take 5.4 GB of a GPU beside its own embeddings and predictions."""
        self._tensors.clear()


def run_task(
    task: str,
    method: Method,
    features: FeatureTensors,
    num_classes: int,
    settings: EvaluationSettings,
    on_progress: Callable[..., object] | None = None,
) -> dict[str, Any] | None:
    """One task's metrics: {part: {metric: value}} for probe tasks, {metric: value} for retrieval, None
    when the task does not apply (retrieval without a predictor). on_progress() is called after each probe
    epoch, on_progress(n) as retrieval has searched the nearest views of n more predictions."""
    train, val, device = features.train, features.val, features.device
    if task == "retrieval":
        if not method.has_predictor:
            return None
        features.release()
        actions, targets = view_zero_queries(val.latents, method.action_dim)
        predicted = predict_views(method.predict, val.embeddings, actions, device)
        return retrieval_scores(predicted, val.embeddings, targets, val.latents, device, on_progress)
    train_features, val_features = features.representations("train"), features.representations("val")
    probe_settings = settings.probe(task)
    metrics = {}
    for part, columns in method.parts.items():
        train_part, val_part = train_features[..., columns], val_features[..., columns]
        if task == "classification":
            metrics[part] = classification_probe(
                train_part, train.labels, val_part, val.labels, num_classes, probe_settings, on_progress
            )
        elif task == "rotation":
            metrics[part] = rotation_probe(
                train_part, train.latents, val_part, val.latents, probe_settings, on_progress
            )
        else:
            metrics[part] = colour_probe(
                train_part, train.latents, val_part, val.latents, probe_settings, on_progress
            )
    return metrics


def check_finite_features(features: SplitFeatures | None, split: str, run: Path, checkpoint: str) -> None:
    """EvaluationError when some representation or embedding is NaN or infinite (a checkpoint whose training
    diverged): probes on such features score nonsense and retrieval cannot rank them."""
    if features is None:
        return
    for name in ("representations", "embeddings"):
        array = getattr(features, name)
        if array is None:
            continue
        bad = sum(
            int(np.count_nonzero(~np.isfinite(array[start : start + FINITE_CHECK_OBJECTS]).all(axis=(1, 2))))
            for start in range(0, len(array), FINITE_CHECK_OBJECTS)
        )
        if bad:
            raise EvaluationError(
                f"{run}: the checkpoint {checkpoint} gives NaN or infinite {name} for {bad} of the "
                f"{len(array)} objects of the {split} split (the training diverged); retrain the run"
            )


# --- the run's and the dataset's identity ----------------------------------------------------------
def check_splits(path: Path, train: ObjectViews, val: ObjectViews, tasks: tuple[str, ...]) -> None:
    """Both splits have objects, no object is in both (the probes would be scored on objects they were
    trained on), and pairs of distinct views exist."""
    for views in (val, train) if set(tasks) & set(PROBE_TASKS) else (val,):
        if len(views) == 0:
            raise EvaluationError(
                f"{path}: the {views.split} split has no objects; render more objects or pick another dataset"
            )
    shared = sorted(set(train.keys) & set(val.keys))
    if shared:
        raise EvaluationError(
            f"{path}: {len(shared)} objects are in both the train and the val split (first: {shared[0]}); "
            "list each object in one split only (`3die check` lists them all)"
        )
    if val.views < 2:
        raise EvaluationError(f"{path}: {val.views} view per object; the evaluations need at least 2")


def dataset_identity(
    path: Path, train: ObjectViews, val: ObjectViews, skipped: list[SkippedObject] | None = None
) -> dict[str, Any]:
    """Name, hash and size of the dataset evaluated, and the objects of `path` left out of it (`skipped`).

    The hash covers the dataset manifest (without package versions) and both splits' objects, labels and
    view count as given (the objects evaluated, as training fingerprints the objects it trains on), so a
    folder and its packed file hash the same, and so do a folder evaluated without its unusable objects
    and the file `3die pack --skip-bad-objects` makes of it; neither hashes like the whole folder. A
    dataset without manifest (the official downloads) has no seed or settings to tell two renderings of
    the same objects apart: its hash also covers the latents of a sample of its objects
    (`latent_sample_digest`)."""
    manifest = dataset_manifest(path)
    if manifest is not None:
        manifest = {key: value for key, value in manifest.items() if key != "versions"}
    fingerprints = {v.split: dataset_fingerprint(v) for v in (train, val)}
    content: dict[str, Any] = {"manifest": manifest, "splits": fingerprints}
    if manifest is None:
        content["latents"] = {v.split: latent_sample_digest(v) for v in (train, val)}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "path": str(path.resolve()),
        "name": dataset_name(path),
        "hash": digest,
        "train_fingerprint": fingerprints[train.split],  # as training records it: tells the run's own data
        "rendering": rendering_settings(manifest),
        "kind": train.kind,
        "views": val.views,
        "objects": {"train": len(train), "val": len(val)},
        "num_classes": train.num_classes,
        "skipped_objects": [
            {"split": entry.split, "object": entry.key, "problem": entry.problem} for entry in skipped or []
        ],
    }


def latent_sample_digest(views: ObjectViews, objects: int = SAMPLE_OBJECTS) -> str:
    """sha256 of every latent of `objects` objects spread evenly over the split (first and last included):
    a few hundred small reads that tell apart datasets with the same objects rendered with other latents.
    Images are not hashed: a packed file re-encoded at another size is the same dataset."""
    digest = hashlib.sha256()
    for index in sample_indices(views, objects):
        digest.update(np.ascontiguousarray(views.latents(index), "<f8").tobytes())
    return digest.hexdigest()


def images_digest(*splits: ObjectViews, objects: int = SAMPLE_OBJECTS) -> str:
    """sha256 of the stored length of every view's image and of every stored image of `objects` objects
    per split (`sample_indices`): what tells the feature cache that images changed where the dataset hash
    does not look (re-rendered in place by another renderer, edited, re-encoded), at the cost of one
    file-system lookup per view. A folder and its plain pack digest the same; a raw pack digests pixels."""
    digest = hashlib.sha256()
    for views in splits:
        for index in range(len(views)):
            lengths = views.stored_lengths(index)
            if lengths is not None:
                digest.update(np.asarray(lengths, "<i8").tobytes())
        for index in sample_indices(views, objects):
            for view in range(views.views):
                digest.update(views.stored_image(index, view))
    return digest.hexdigest()


def sample_indices(views: ObjectViews, objects: int) -> list[int]:
    """`objects` indices spread evenly over the split, the first and last included."""
    spread = np.linspace(0, len(views) - 1, min(objects, len(views))).round().astype(int)
    return np.unique(spread).tolist()


def dataset_name(path: Path) -> str:
    """What results and leaderboards call a dataset: a packed file's stem, a folder's name."""
    return path.stem if path.is_file() else path.resolve().name


def training_dataset(config: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset a run trained on, from its config: path as given to training, name, the fingerprint
    of the objects it trained on (`benchmark.train.loop.dataset_fingerprint`) and its rendering settings
    (`benchmark.data.rendering_settings`; None for runs trained before they were recorded); None when it
    names no dataset."""
    if config.get("data") is None:
        return None
    path = Path(config["data"])
    return {
        "path": str(path),
        "name": dataset_name(path),
        "fingerprint": config.get("dataset", {}).get("fingerprint"),
        "rendering": config.get("dataset", {}).get("rendering"),
    }


def results_header(
    run: Path,
    config: dict[str, Any],
    dataset: dict[str, Any],
    checkpoint: dict[str, str],
    key: str,
    device: torch.device,
    train_seconds: float | None,
) -> dict[str, Any]:
    """Everything in results.json but the metrics: method, training, dataset, checkpoint, evaluation."""
    trained = config["checkpoint"]
    return {
        "format": RESULTS_FORMAT,
        "run": str(run.resolve()),
        "method": config["method"],
        "method_config": config["method_config"],
        "training": {
            "preset": config.get("preset"),
            "method_options": config.get("method_options"),
            "epochs": config["epochs"],
            "epochs_done": trained["epochs_done"],
            "complete": trained["complete"],
            "seed": config["seed"],
            "image_size": config["image_size"],
            "width": config.get("width"),
            "batch_size": config.get("batch_size"),
            "lr": config.get("lr"),
            "weight_decay": config.get("weight_decay"),
            "device": config.get("device"),
            "world_size": config.get("world_size", 1),
            "hardware": config.get("hardware") or f"{config.get('world_size', 1)}x {config.get('device')}",
            "seconds": config["train_seconds"] if config.get("train_seconds") is not None else train_seconds,
            "version": config.get("version"),
            "dataset": training_dataset(config),
        },
        "dataset": dataset,
        "checkpoint": checkpoint,
        "features": {"key": key, "folder": str((run / FEATURES_DIR / key).resolve())},
        "evaluation": {
            "device": str(device),
            "hardware": describe_hardware(device),
            "code_version": code_version(),
            "evaluated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }


def describe_hardware(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_description()


# --- results.json --------------------------------------------------------------------------------
def read_results(path: Path, echo: Callable[[str], None]) -> dict[str, Any] | None:
    """A run's results.json, or None when there is none or it cannot be read (said through `echo`)."""
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        echo(f"{path}: unreadable ({error})")
        return None
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        return None
    problem = results_problem(results)
    if problem is not None:
        echo(f"{path}: {problem}")
        return None
    return upgrade_results(results)


#: Sections of results.json that hold one object each, and those whose values are objects too (per task).
RESULTS_SECTIONS = ("features", "settings", "metrics", "seconds", "skipped", "evaluated")
RESULTS_TASK_SECTIONS = ("settings", "metrics", "evaluated")


def results_problem(results: dict[str, Any]) -> str | None:
    """What makes a results dict of the right format unusable (a section that is not an object, as a
    hand edit or another tool could leave), or None."""
    for section in RESULTS_SECTIONS:
        if section in results and not isinstance(results[section], dict):
            return f"its {section!r} is a {type(results[section]).__name__}, not an object"
    for section in RESULTS_TASK_SECTIONS:
        for task, value in results.get(section, {}).items():
            if not isinstance(value, dict):
                return f"its {section}.{task} is a {type(value).__name__}, not an object"
    metrics = results.get("metrics", {})
    for task, parts in metrics.items():
        for part, value in parts.items() if task in PROBE_TASKS else ():  # retrieval's are numbers
            if not isinstance(value, dict):
                return f"its metrics.{task}.{part} is a {type(value).__name__}, not an object"
    return None


def upgrade_results(results: dict[str, Any]) -> dict[str, Any]:
    """Results written by an earlier 3die, read as this one's (in place): a retrieval `pre` without
    `emb_dist` is from before the published PRE was computed, when `pre` named the embedding distance,
    and becomes `emb_dist` (the published PRE is then missing until the retrieval task runs again)."""
    retrieval = results.get("metrics", {}).get("retrieval")
    if isinstance(retrieval, dict) and "pre" in retrieval and "emb_dist" not in retrieval:
        retrieval["emb_dist"] = retrieval.pop("pre")
    return results


def continue_results(
    previous: dict[str, Any] | None, header: dict[str, Any], run: Path, echo: Callable[[str], None]
) -> dict[str, Any]:
    """The results to fill: the previous tasks' metrics are kept when they were computed from the same
    features (checkpoint, dataset, image size); results of another checkpoint or dataset are copied to
    results.KEY.json (results.json keeps them until this evaluation writes its first score), and a
    results.json that is not ours (unreadable, another format) is moved to results.unusable.json, rather
    than lost."""
    results = {**header, "settings": {}, "metrics": {}, "seconds": {}, "skipped": {}, "evaluated": {}}
    if previous is None:
        if (run / RESULTS_NAME).is_file():
            kept = set_aside(run / RESULTS_NAME, "unusable")
            echo(f"{run / RESULTS_NAME}: not a {RESULTS_FORMAT} results file; moved to {kept.name}")
        return results
    old_key = previous.get("features", {}).get("key")
    if old_key == header["features"]["key"]:
        if "extracted_with" in previous["features"]:
            results["features"] = {
                **results["features"],
                "extracted_with": previous["features"]["extracted_with"],
            }
        for section in ("settings", "metrics", "seconds", "skipped", "evaluated"):
            results[section] = dict(previous.get(section, {}))
        return results
    kept = set_aside(run / RESULTS_NAME, str(old_key), keep=True)
    echo(
        f"{run / RESULTS_NAME}: results of another checkpoint or dataset copied to {kept.name}; this "
        "evaluation replaces them as it scores its first task"
    )
    return results


def set_aside(path: Path, tag: str, keep: bool = False) -> Path:
    """Rename `path` to STEM.TAG.json (STEM.TAG-2.json, ... when that exists); returns the new path.
    `keep`: copy it there instead, leaving `path` as it is until it is replaced (an evaluation that fails
    before its first score leaves the run's results.json as it was), and reuse a copy of the same bytes
    made by an earlier attempt."""
    data = path.read_bytes() if keep else None
    count, kept = 1, path.with_name(f"{path.stem}.{tag}.json")
    while kept.exists():
        if data is not None and kept.is_file() and kept.read_bytes() == data:
            return kept
        count += 1
        kept = path.with_name(f"{path.stem}.{tag}-{count}.json")
    if data is None:
        os.replace(path, kept)
    else:
        write_bytes_atomically(kept, data)
    return kept


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write results.json atomically; NaN scores (e.g. R^2 of constant targets) become null."""
    write_text_atomically(path, json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
