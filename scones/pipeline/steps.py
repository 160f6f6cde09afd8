"""The workflow's steps as plain functions (the CLI and the tests call these): stage, train, evaluate.

The model code (torch) is imported inside the functions that train or evaluate, so that every other command
starts without it (`scones --help`, classify, captures, deploy: well under a second)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from local_model import artifact, data
from scones.errors import DataDirError, NothingStagedError, NoTrainedModelError, StepFailedError, UsageProblemError
from scones.pipeline import registry

HOLDOUT_FRACTION = 0.2  # of an image folder without a test split, held out from training for evaluation
HOLDOUT_SEED = 20261125
# Enough to see the pipeline work, not for accuracy: one network, and a validation split for its threshold and
# drift baseline (the recipe's cross-fitted ones are for the full recipe only: local_model/recipe.py); no CutMix,
# measured only over the full recipe's 200 epochs.
QUICK_HYPERPARAMETERS = {"epochs": "15", "ensemble_size": "1", "val_fraction": "0.1", "cutmix": "0"}


class StepError(StepFailedError):
    """A step cannot run; the message says what to do."""


class HyperparameterOverrideError(UsageProblemError):
    """A --set is not KEY=VALUE, names no hyperparameter, or has a value of the wrong type."""


@dataclass
class StagedData:
    root: Path  # <workdir>/data: train/ and test/ with bicycle/ and motorcycle/, plus .lst manifests
    source: str  # where the images came from
    test_is_holdout: bool  # test/ was held out of an image folder that had no test split

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    def test_images(self) -> list[tuple[Path, str]]:
        """(image, true class) of every test image, the classes interleaved so that any prefix (--limit)
        holds both."""
        by_class = [
            [(p, name) for p in sorted((self.test_dir / name).glob("*")) if p.suffix.lower() in data.IMAGE_SUFFIXES]
            for name in artifact.CLASSES
        ]
        interleaved = itertools.chain.from_iterable(itertools.zip_longest(*by_class))
        return [item for item in interleaved if item is not None]

    def describe(self) -> dict:
        counts = {
            split: {name: len(list((self.root / split / name).glob("*"))) for name in artifact.CLASSES}
            for split in data.SPLITS
        }
        return {"root": str(self.root), "source": self.source, "test_is_holdout": self.test_is_holdout, **counts}


@dataclass
class ModelPaths:
    opt_ml: Path  # the SageMaker /opt/ml tree the training entrypoint runs against
    model_dir: Path
    tarball: Path


@dataclass
class TrainedModel:
    tarball: Path
    sha256: str
    metrics: dict


def training_hyperparameters(quick: bool, overrides: dict) -> dict:
    """The hyperparameters a training run gets (SageMaker style: strings), checked."""
    from local_model import train as training  # torch: only commands that train pay for it

    hyperparameters = {**(QUICK_HYPERPARAMETERS if quick else {}), **overrides}
    try:
        training.Hyperparameters.from_dict(hyperparameters)
    except training.HyperparameterError as e:
        raise HyperparameterOverrideError(f"--set: {e}") from e
    return hyperparameters


def describe_recipe(quick: bool, overrides: dict) -> str:
    """E.g. "quick recipe (15 epochs)" or "full recipe (2 networks x 200 epochs)", for progress messages."""
    from local_model import train as training

    hp = training.Hyperparameters.from_dict(training_hyperparameters(quick, overrides))
    changed = "".join(f", {k}={v}" for k, v in overrides.items() if k not in ("epochs", "ensemble_size"))
    networks = f"{hp.ensemble_size} networks x " if hp.ensemble_size > 1 else ""
    return f"{'quick' if quick else 'full'} recipe ({networks}{hp.epochs} epochs{changed})"


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HyperparameterOverrideError(f"hyperparameter overrides are KEY=VALUE, got {pair!r}")
        overrides[key] = value
    return overrides


def _find_split(folder: Path, split: str) -> Path | None:
    if (folder / split).is_dir():
        return folder / split
    if split == "train" and all((folder / name).is_dir() for name in artifact.CLASSES):
        return folder
    return None


def _link_split(images: data.ImageSet, source_dir: Path, dest_root: Path, split: str, indices) -> None:
    """Symlink the chosen images into dest_root/split (no copies) and write the split's .lst."""
    rows = []
    for n, i in enumerate(indices):
        rel = images.paths[i]
        target = dest_root / split / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((source_dir / rel).resolve())
        rows.append(f"{n}\t{images.labels[i]}\t{rel}")
    (dest_root / f"{split}.lst").write_text("\n".join(rows) + "\n")


def stage_data(workdir: Path, data_dir: Path | None = None, cache_dir: Path | None = None) -> StagedData:
    """Stage into <workdir>/data: from --data-dir (linked, never copied) or by downloading CIFAR-100."""
    root = Path(workdir) / "data"
    marker = root / "staged.json"
    source = str(Path(data_dir).resolve()) if data_dir else data.CIFAR100_URL
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous["source"] == source:
            return StagedData(root, source, previous["test_is_holdout"])
    shutil.rmtree(root, ignore_errors=True)
    try:
        if data_dir is None:
            data.stage_cifar100(root, cache_dir or Path(workdir) / "cache")
            test_is_holdout = False
        else:
            test_is_holdout = _stage_folder(Path(data_dir), root)
    except data.DownloadError:
        shutil.rmtree(root, ignore_errors=True)
        raise  # an environment problem (no network), reported as such
    except data.DataError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise StepError(str(e)) from e
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    marker.write_text(json.dumps({"source": source, "test_is_holdout": test_is_holdout}))
    return StagedData(root, source, test_is_holdout)


def staged_data(workdir: Path) -> StagedData | None:
    """What an earlier `stage` left in <workdir>/data, if anything."""
    root = Path(workdir) / "data"
    try:
        previous = json.loads((root / "staged.json").read_text())
    except (OSError, ValueError):
        return None
    return StagedData(root, previous["source"], previous["test_is_holdout"])


def stage_or_reuse(workdir: Path, data_dir: Path | None) -> StagedData:
    """--data-dir when given, else what is staged already, else CIFAR-100 (downloaded)."""
    if data_dir is None and (staged := staged_data(workdir)) is not None:
        return staged
    return stage_data(workdir, data_dir)


def require_staged(workdir: Path) -> StagedData:
    staged = staged_data(workdir)
    if staged is None:
        raise NothingStagedError(
            f"no images staged in {Path(workdir) / 'data'}: run `scones stage` (CIFAR-100) or "
            "`scones stage --data-dir FOLDER`, or pass --data-dir here"
        )
    return staged


def _stage_folder(data_dir: Path, root: Path) -> bool:
    if not data_dir.is_dir():
        raise DataDirError(f"--data-dir {data_dir} is not a directory: give a folder holding bicycle/ and motorcycle/")
    train_dir = _find_split(data_dir, "train")
    if train_dir is None:
        raise DataDirError(
            f"--data-dir {data_dir} has neither train/ nor bicycle/ and motorcycle/ folders: give a folder laid "
            "out as train/{bicycle,motorcycle}/*.png (test/ optional) or {bicycle,motorcycle}/*.png"
        )
    try:
        train_images = data.load_image_folder(train_dir)  # validates every image before staging
        test_dir = _find_split(data_dir, "test")
        test_images = data.load_image_folder(test_dir) if test_dir is not None else None
    except data.DataError as e:
        raise DataDirError(f"--data-dir {data_dir}: {e}") from e
    if test_dir is not None:
        _link_split(train_images, train_dir, root, "train", range(len(train_images)))
        _link_split(test_images, test_dir, root, "test", range(len(test_images)))
        return False
    train_idx, held_idx = data.holdout_split(train_images.labels, HOLDOUT_FRACTION, HOLDOUT_SEED)
    _link_split(train_images, train_dir, root, "train", train_idx)
    _link_split(train_images, train_dir, root, "test", held_idx)
    return True


def model_paths(workdir: Path) -> ModelPaths:
    opt_ml = Path(workdir) / "opt_ml"
    return ModelPaths(opt_ml=opt_ml, model_dir=opt_ml / "model", tarball=Path(workdir) / "model" / "model.tar.gz")


def training_log(workdir: Path) -> Path:
    return Path(workdir) / "logs" / "train.log"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_model(workdir: Path, staged: StagedData, overrides: dict, quick: bool = False) -> TrainedModel:
    """Run the SageMaker training entrypoint in-process against <workdir>/opt_ml; pack model.tar.gz."""
    from local_model import train as training

    paths = model_paths(workdir)
    hyperparameters = training_hyperparameters(quick, overrides)
    shutil.rmtree(paths.opt_ml, ignore_errors=True)
    config = paths.opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = paths.opt_ml / "input" / "data" / "train"
    channel.parent.mkdir(parents=True)
    channel.symlink_to(staged.train_dir.resolve())
    log = training_log(workdir)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The entrypoint prints its metrics for SageMaker's log; here they go to a file (progress bars: stderr).
        with open(log, "w") as out, contextlib.redirect_stdout(out):
            # No SM_* of the caller's environment applies: they would point the job elsewhere.
            metrics = training.run_training_job(training.TrainingPaths.resolve(paths.opt_ml, environ={}))
    except data.DataError as e:
        raise StepError(str(e)) from e
    artifact.pack_model_tar(paths.model_dir, paths.tarball)
    # Every trained model is kept as a version (scones/pipeline/registry.py), with the hash of its images.
    version = registry.register_model(
        workdir, paths.tarball, source="train", data_sha256=registry.data_hash(staged.train_dir)
    )
    return TrainedModel(paths.tarball, version.id, metrics)


def describe_trained(model: TrainedModel, model_dir: Path) -> str:
    """E.g. "out-of-fold accuracy 0.968 on 1000 images; threshold 0.8 from model.json: routed precision ...":
    what training measured on images its networks did not see, and the threshold it chose."""
    from scones.pipeline.deployment import resolve_threshold

    parts = []
    for key, what in (("validation", "validation"), ("out_of_fold", "out-of-fold")):
        held = model.metrics.get(key)
        if held:
            parts.append(f"{what} accuracy {held['accuracy']:.3f} on {held['n_images']} images")
    threshold = resolve_threshold(None, model_dir)
    parts.append(f"threshold {threshold.value} from {threshold.source}")
    return "; ".join(parts)


def require_model(workdir: Path) -> ModelPaths:
    """The trained model's paths; NoTrainedModelError saying exactly what is missing when there is none.

    model.tar.gz is the model (what training writes, what promotion uploads); the folder beside it in opt_ml/
    is its unpacked copy, which the in-process commands load. A workdir holding only model/model.tar.gz (copied
    from another machine, or trained elsewhere) gets the copy unpacked here, and so does one whose tarball was
    replaced since (its model.json is not the copy's)."""
    paths = model_paths(workdir)
    if not paths.tarball.is_file():
        unpacked = " (an unpacked model is in " + str(paths.model_dir) + ", but not its model.tar.gz)"
        raise NoTrainedModelError(
            f"no trained model: {paths.tarball} is missing{unpacked if paths.model_dir.is_dir() else ''}. "
            "Run `scones train` (or `scones train --quick`), or copy a model.tar.gz there"
        )
    if _unpacked_copy_is_stale(paths):
        unpack_model(paths)
    return paths


def _unpacked_copy_is_stale(paths: ModelPaths) -> bool:
    """Whether the unpacked copy is missing or is not the tarball's (their model.json differ: it holds the
    training run's metrics, so two trainings practically never write the same one)."""
    meta = paths.model_dir / artifact.META_FILE
    if not meta.is_file():
        return True
    try:
        with tarfile.open(paths.tarball, "r:gz") as tar:
            member = tar.extractfile(artifact.META_FILE)
            return member is None or member.read() != meta.read_bytes()
    except (KeyError, tarfile.TarError, OSError, EOFError):
        return True  # unpacking names what is wrong with it


def unpack_model(paths: ModelPaths) -> None:
    """Replace the unpacked copy with model.tar.gz's content (unpacked beside it first, then swapped in, so an
    unreadable tarball leaves the old copy as it was)."""
    paths.model_dir.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".model-", dir=paths.model_dir.parent))
    try:
        artifact.unpack_model_tar(paths.tarball, fresh)
        if not (fresh / artifact.META_FILE).is_file():
            raise NoTrainedModelError(f"{paths.tarball} holds no {artifact.META_FILE}: it is not a model.tar.gz")
        shutil.rmtree(paths.model_dir, ignore_errors=True)
        fresh.rename(paths.model_dir)
    except artifact.ModelFormatError as e:
        raise NoTrainedModelError(f"{e}: train again (`scones train`) or copy an intact model.tar.gz") from e
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def evaluate_model(workdir: Path, staged: StagedData, threshold, plot_path: Path | None = None) -> dict:
    """Accuracy, confusion matrix, and coverage and routed precision at `threshold` (a ChosenThreshold) of the
    trained model (in-process) on the staged test images; with `plot_path`, the precision/coverage PNG."""
    from local_model import classifier
    from local_model import train as training
    from scones.monitoring.report import plot_precision_coverage

    paths = require_model(workdir)
    model = classifier.load_model_dir(paths.model_dir)
    images = data.load_image_folder(staged.test_dir)
    report = training.evaluate(model, images, threshold=threshold.value)
    report["threshold_source"] = threshold.source
    report["test_is_holdout"] = staged.test_is_holdout
    if plot_path is not None and len(images):
        probs = model.predict_proba(images.images)
        correct = (probs.argmax(1) == images.labels).tolist()
        report["precision_coverage_plot"] = str(
            plot_precision_coverage(probs.max(1).tolist(), correct, threshold.value, Path(plot_path), "the model")
        )
    return report


def format_evaluation(report: dict) -> str:
    cm = np.asarray(report["confusion_matrix"])
    names = artifact.CLASSES
    what = "held-out training images" if report.get("test_is_holdout") else "test images"
    lines = [f"accuracy {report['accuracy']:.3f} on {report['n_images']} {what}"]
    if "threshold" in report:
        from local_model.threshold import wilson_interval
        from scones.monitoring.report import with_interval

        routed, right, n = report["routed"], report["routed_correct"], report["n_images"]
        lines.append(
            f"at threshold {report['threshold']} ({report['threshold_source']}): coverage "
            f"{with_interval(report['routed_fraction'], wilson_interval(routed, n))} (share routed, {routed} of {n}), "
            f"routed precision {with_interval(report['routed_accuracy'], wilson_interval(right, routed))} "
            f"({right} of {routed} to their true class)"
        )
    if report.get("precision_coverage_plot"):
        lines.append(f"precision/coverage curve: {report['precision_coverage_plot']}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * 12 + "".join(f"{n:>12}" for n in names))
    for name, row in zip(names, cm, strict=True):
        lines.append(f"{name:>12}" + "".join(f"{v:>12}" for v in row))
    return "\n".join(lines)
