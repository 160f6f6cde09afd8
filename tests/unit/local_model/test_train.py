"""Training: hyperparameter parsing, the SageMaker training contract, determinism, model packaging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from local_model import classifier, train
from local_model.baseline import BASELINE_FILE, NoBaselineError, load_baseline
from local_model.data import load_image_folder
from local_model.train import HyperparameterError, Hyperparameters

TINY = {
    "epochs": "2",
    "width": "4",
    "batch_size": "8",
    "autoaugment": "false",
    "cutmix": "0",  # tested on its own below
    "bf16": "false",
    "ensemble_size": "1",
    "parallel_networks": "1",
}


def make_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classifier.CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            pixels[..., label] = 255  # a learnable difference between the classes
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_hyperparameters_parse_sagemaker_strings():
    hp = Hyperparameters.from_dict({"epochs": "3", "lr": "0.5", "autoaugment": "False"})
    assert (hp.epochs, hp.lr, hp.autoaugment) == (3, 0.5, False)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epoch": "3"}, "unknown hyperparameters"),
        ({"epochs": "three"}, "epochs"),
        ({"bf16": "maybe"}, "bf16"),
        ({"cutmix": "1.5"}, "cutmix"),
    ],
)
def test_bad_hyperparameters_are_named(raw, message):
    with pytest.raises(HyperparameterError, match=message):
        Hyperparameters.from_dict(raw)


def test_augment_keeps_shape_and_dtype():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = train.augment(images, Hyperparameters(), None)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)


def test_cutmix_pastes_one_box_of_each_partner_and_weighs_by_the_pixels_kept():
    torch.manual_seed(3)
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 32, 32).contiguous()  # image i is all i
    mixed, partner, kept = train.cutmix(x)
    for i in range(6):
        own = (mixed[i] == i).float().mean().item()
        assert own == pytest.approx(kept) or partner[i] == i  # an image paired with itself keeps everything
        assert set(mixed[i].unique().tolist()) <= {float(i), float(partner[i])}
    assert 0.0 <= kept < 1.0  # seed 3 cuts a box
    assert torch.equal(x, torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 32, 32))  # untouched


def test_training_with_cutmix_runs(tmp_path):
    metrics = train.train_from_folder(make_folder(tmp_path / "data"), tmp_path / "model", {**TINY, "cutmix": "1"})
    assert metrics["n_train_images"] == 16


def opt_ml_tree(root: Path, hyperparameters: dict) -> Path:
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    make_folder(root / "input/data/train")
    make_folder(root / "input/data/validation", per_class=3, seed=1)
    return root


def test_training_entrypoint_follows_the_sagemaker_contract(tmp_path, monkeypatch):
    for var in ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_OUTPUT_FAILURE"):
        monkeypatch.delenv(var, raising=False)
    root = opt_ml_tree(tmp_path / "opt_ml", TINY)
    assert train.main(["--opt-ml", str(root)]) == 0
    assert not (root / "output/failure").exists()
    meta = json.loads((root / "model/model.json").read_text())
    assert meta["classes"] == ["bicycle", "motorcycle"] and meta["width"] == 4
    assert meta["metrics"]["validation"]["n_images"] == 6  # the validation channel, not a holdout
    assert meta["mean"] == list(classifier.CIFAR100_MEAN)
    loaded = classifier.load_model_dir(root / "model")
    probs = loaded.predict_proba(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # The drift baseline: the model's scores on those 6 validation images, beside model.json.
    base = load_baseline(root / "model")
    assert base.n_images == 6 and sum(base.class_counts) == 6 and base.source == "validation split (6 images)"
    validation = load_image_folder(root / "input/data/validation")
    expected = loaded.predict_proba(validation.images).max(1)
    assert np.allclose(sorted(base.confidences), sorted(expected), atol=1e-5)


def test_a_model_trained_without_a_validation_split_has_no_baseline(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / BASELINE_FILE).write_text("{}")  # a stale one from an earlier run must not survive
    train.train_from_folder(make_folder(tmp_path / "data"), model_dir, {**TINY, "val_fraction": "0"})
    with pytest.raises(NoBaselineError, match="without a validation split"):
        load_baseline(model_dir)
    train.train_from_folder(make_folder(tmp_path / "data"), model_dir, {**TINY, "val_fraction": "0.25"})
    assert load_baseline(model_dir).n_images == 4  # a quarter of 8 per class, held out


def test_sm_environment_variables_override_the_paths(tmp_path, monkeypatch):
    root = opt_ml_tree(tmp_path / "opt_ml", TINY)
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(make_folder(tmp_path / "other_train")))
    assert train.main(["--opt-ml", str(root)]) == 0
    assert (tmp_path / "elsewhere/model.pt").is_file() and not (root / "model").exists()


def test_training_failure_writes_the_failure_file_and_exits_nonzero(tmp_path, monkeypatch):
    for var in ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_OUTPUT_FAILURE"):
        monkeypatch.delenv(var, raising=False)
    root = opt_ml_tree(tmp_path / "opt_ml", TINY)
    for png in (root / "input/data/train/motorcycle").glob("*.png"):
        png.unlink()
    assert train.main(["--opt-ml", str(root)]) == 1
    failure = (root / "output/failure").read_text()
    assert failure.startswith("MissingClassError") and "motorcycle" in failure


def test_training_is_deterministic_for_a_seed(tmp_path):
    hp = Hyperparameters.from_dict({**TINY, "autoaugment": "true", "val_fraction": "0"})
    folder = make_folder(tmp_path / "data")
    from local_model.data import load_image_folder

    images = load_image_folder(folder)
    a = train.train_network(images, hp, seed=3).state_dict()
    b = train.train_network(images, hp, seed=3).state_dict()
    c = train.train_network(images, hp, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_model_tar_is_reproducible_and_round_trips(tmp_path):
    from local_model.model import ResNet9

    torch.manual_seed(0)
    nets = [ResNet9(width=4), ResNet9(width=4)]
    classifier.save_model_dir(tmp_path / "m", nets, classifier.ModelMeta(width=4))
    first = classifier.pack_model_tar(tmp_path / "m", tmp_path / "a/model.tar.gz").read_bytes()
    second = classifier.pack_model_tar(tmp_path / "m", tmp_path / "b/model.tar.gz").read_bytes()
    assert first == second
    loaded = classifier.load_model_dir(classifier.unpack_model_tar(tmp_path / "a/model.tar.gz", tmp_path / "x"))
    assert len(loaded.networks) == 2
    x = torch.zeros(1, 3, 32, 32)
    assert torch.allclose(loaded.networks[1].eval()(x), nets[1].eval()(x))


def test_loading_a_broken_model_dir_is_a_named_error(tmp_path):
    with pytest.raises(classifier.ModelFormatError, match=r"model\.json"):
        classifier.load_model_dir(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(classifier.ModelFormatError, match=r"model\.pt"):
        classifier.load_model_dir(tmp_path)


def test_evaluate_reports_routing_at_a_threshold():
    from local_model.data import ImageSet
    from local_model.model import ResNet9

    torch.manual_seed(0)
    model = classifier.Classifier([ResNet9(width=4)], classifier.ModelMeta(width=4))
    images = ImageSet(np.zeros((4, 32, 32, 3), dtype=np.uint8), np.array([0, 0, 1, 1]), ["a", "b", "c", "d"])
    everything = train.evaluate(model, images, threshold=0.0)
    nothing = train.evaluate(model, images, threshold=1.01)
    assert everything["routed_fraction"] == 1.0 and everything["routed_accuracy"] == everything["accuracy"]
    assert nothing["routed_fraction"] == 0.0 and nothing["routed_accuracy"] is None
    assert "routed_fraction" not in train.evaluate(model, images)


def test_cross_fitting_scores_each_image_with_the_network_that_never_saw_it(tmp_path):
    from local_model.data import stratified_folds

    images = load_image_folder(make_folder(tmp_path / "data", per_class=6))
    hp = Hyperparameters.from_dict({**TINY, "cross_fit_folds": "3", "ensemble_size": "3"})
    networks, held_idx, oof = train.train_cross_fitted(images, hp)
    assert len(networks) == 3 and oof.shape == (2, 12, 2)  # flip TTA: 2 views of all 12 images
    assert sorted(held_idx) == list(range(12))
    assert not torch.allclose(net_logits(networks[0], images.images), net_logits(networks[1], images.images))
    folds = stratified_folds(images.labels, 3, seed=hp.seed)
    start = 0
    for net, held in zip(networks, folds, strict=True):
        assert list(held_idx[start : start + len(held)]) == list(held)
        assert torch.allclose(oof[:, start : start + len(held)], net_logits(net, images.images[held]))
        start += len(held)


def test_fewer_networks_than_folds_leave_out_one_fold_each(tmp_path):
    images = load_image_folder(make_folder(tmp_path / "data", per_class=10))
    hp = Hyperparameters.from_dict({**TINY, "cross_fit_folds": "5", "ensemble_size": "2"})
    networks, held_idx, oof = train.train_cross_fitted(images, hp)
    assert len(networks) == 2 and len(held_idx) == 8 and len(set(held_idx)) == 8  # 2 of 5 folds of 20 images
    assert oof.shape == (2, 8, 2)


def net_logits(net, images):
    return classifier.Classifier([net], classifier.ModelMeta(width=4)).logits(images)


def test_a_cross_fitted_model_chooses_its_threshold_on_every_training_image(tmp_path):
    model_dir = tmp_path / "model"
    metrics = train.train_from_folder(
        make_folder(tmp_path / "data"), model_dir, {**TINY, "cross_fit_folds": "2", "ensemble_size": "2"}
    )
    meta = json.loads((model_dir / "model.json").read_text())
    assert len(classifier.load_model_dir(model_dir).networks) == 2  # the served ensemble: one network per fold
    assert "validation" not in metrics  # no split held out: all 16 images trained one of the networks
    assert metrics["out_of_fold"]["n_images"] == 16 and meta["confidence_threshold"]["n_images"] == 16
    # 16 images are too few to choose from: the fallback says so (a real run has hundreds).
    assert meta["confidence_threshold"]["source"] == "fallback"
    base = load_baseline(model_dir)
    assert base.n_images == 16 and base.source == "out-of-fold predictions (16 images, 2 of 2 folds)"


def test_cross_fitting_chooses_the_threshold_out_of_fold(tmp_path, monkeypatch):
    monkeypatch.setattr("local_model.threshold.MIN_VALIDATION_IMAGES", 10)
    model_dir = tmp_path / "model"
    train.train_from_folder(
        make_folder(tmp_path / "data"),
        model_dir,
        {**TINY, "cross_fit_folds": "2", "ensemble_size": "2", "epochs": "6", "routed_precision_target": "0.5"},
    )
    chosen = json.loads((model_dir / "model.json").read_text())["confidence_threshold"]
    assert chosen["source"] == "out-of-fold" and chosen["value"] is not None and chosen["n_images"] == 16


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cross_fit_folds": "0"}, "is not >= 1"),
        ({"cross_fit_folds": "4", "ensemble_size": "5"}, "one network per fold at most"),
        ({"ensemble_size": "0"}, "ensemble_size=0"),
        ({"parallel_networks": "-1"}, "parallel_networks"),
    ],
)
def test_cross_fitting_settings_are_checked(raw, message):
    with pytest.raises(HyperparameterError, match=message):
        Hyperparameters.from_dict(raw)


def test_networks_trained_in_parallel_processes_are_those_trained_one_after_another(tmp_path):
    images = load_image_folder(make_folder(tmp_path / "data", per_class=4))
    jobs = [train.NetworkJob(images, seed, f"net {seed}", held_out=images.images[:3]) for seed in (1, 2)]
    alone = train.train_networks(jobs, Hyperparameters.from_dict({**TINY, "parallel_networks": "1"}))
    together = train.train_networks(jobs, Hyperparameters.from_dict({**TINY, "parallel_networks": "2"}))
    for (a, held_a), (b, held_b) in zip(alone, together, strict=True):
        for wa, wb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.allclose(wa.float(), wb.float(), atol=1e-4)  # one thread each there: rounding differs
        assert torch.allclose(held_a, held_b, atol=1e-4)
    assert not torch.allclose(alone[0][1], alone[1][1])  # two seeds, two networks


def test_network_workers_stop_when_the_training_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = make_folder(tmp_path / "data", per_class=4)
    script = f"""
from local_model import train
from local_model.data import load_image_folder
images = load_image_folder({str(folder)!r})
hp = train.Hyperparameters.from_dict({{**{TINY!r}, "epochs": "100000", "parallel_networks": "2"}})
train.train_networks([train.NetworkJob(images, 1, "a"), train.NetworkJob(images, 2, "b")], hp)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)

    def stat(pid: int) -> list[str]:
        """The fields of /proc/PID/stat after the command name: [state, ppid, ...]; [] once gone."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return []

    def workers() -> list[int]:
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and stat(int(entry.name))[1:2] == [str(parent.pid)]
            and b"spawn_main" in (entry / "cmdline").read_bytes()
        ]

    deadline = time.monotonic() + 60
    while len(workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    children = workers()
    assert len(children) == 2, f"the two workers never started: {children}"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def running() -> list[int]:
        return [pid for pid in children if stat(pid)[:1] not in ([], ["Z"])]

    deadline = time.monotonic() + 20
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running() == []
