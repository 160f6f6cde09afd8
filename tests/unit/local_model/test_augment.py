"""AutoAugment: the policy table, each op, identity magnitudes, determinism per seed, the numpy lookup-table ops
against Pillow's, and the training augmentation against a plain per-image one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from local_model import train
from local_model.augment import CIFAR10_POLICY, NUM_BINS, OPS, RANGES, AutoAugment, magnitude
from local_model.train import Hyperparameters

STEPS = sorted({(op, level) for sub_policy in CIFAR10_POLICY for op, _, level in sub_policy}, key=str)


def image(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def always(*steps: tuple[str, int | None]) -> AutoAugment:
    """An AutoAugment whose one sub-policy applies `steps` every time."""
    return AutoAugment(policy=(tuple((op, 1.0, level) for op, level in steps),))


def test_the_policy_table_has_25_sub_policies_of_2_known_steps():
    assert len(CIFAR10_POLICY) == 25
    for sub_policy in CIFAR10_POLICY:
        assert len(sub_policy) == 2
        for op, probability, level in sub_policy:
            assert op in OPS and 0.0 <= probability <= 1.0
            assert (level is None) == (op not in RANGES)  # magnitude-free ops have no bin
            assert level is None or 0 <= level < NUM_BINS


def test_magnitude_ranges():
    size = (32, 32)
    assert [magnitude("Posterize", level, size) for level in range(NUM_BINS)] == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert magnitude("Solarize", 0, size) == 255 and magnitude("Solarize", NUM_BINS - 1, size) == 0
    assert magnitude("TranslateX", NUM_BINS - 1, size) == 14  # 150/331 of 32 px, whole pixels
    assert magnitude("TranslateY", NUM_BINS - 1, (32, 64)) == 29  # scales with the height
    assert magnitude("Rotate", NUM_BINS - 1, size) == pytest.approx(30.0)
    assert magnitude("ShearX", NUM_BINS - 1, size) == pytest.approx(0.3)
    assert magnitude("Color", NUM_BINS - 1, size) == pytest.approx(0.9)


@pytest.mark.parametrize(("op", "level"), STEPS)
def test_every_op_of_the_table_keeps_shape_and_dtype(op, level):
    torch.manual_seed(0)
    for seed in range(4):  # both signs of the signed ops
        out = always((op, level))(image(seed))
        assert out.shape == (3, 32, 32) and out.dtype == torch.uint8


@pytest.mark.parametrize("op", sorted(RANGES.keys() - {"Solarize"}))
def test_bin_0_of_the_geometric_and_enhance_ops_and_posterize_is_the_identity(op):
    torch.manual_seed(0)
    for seed in range(4):
        assert torch.equal(always((op, 0))(image(seed)), image(seed)), op


def test_invert_twice_is_the_identity_and_solarize_at_0_inverts():
    img = image()
    assert torch.equal(always(("Invert", None), ("Invert", None))(img), img)
    assert torch.equal(always(("Invert", None))(img), 255 - img)
    assert torch.equal(always(("Solarize", NUM_BINS - 1))(img), 255 - img)


def test_translation_shifts_whole_pixels_and_fills_black():
    img = image()
    shifted = [always(("TranslateX", NUM_BINS - 1))(img) for _ in range(8)]
    for out in shifted:
        left = torch.equal(out[:, :, :18], img[:, :, 14:]) and not out[:, :, 18:].any()
        right = torch.equal(out[:, :, 14:], img[:, :, :18]) and not out[:, :, :14].any()
        assert left or right
    assert len({out[:, :, 0].sum().item() for out in shifted}) == 2  # both directions occur


def test_the_policy_is_deterministic_per_seed():
    images = [image(seed) for seed in range(64)]
    auto = AutoAugment()

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return torch.stack([auto(img) for img in images])

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.equal(first, run(1))
    assert not torch.equal(first, torch.stack(images))


def test_the_training_augmentation_with_autoaugment_keeps_shape_and_dtype():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = train.augment(images, Hyperparameters(), AutoAugment())
    assert out.shape == images.shape and out.dtype == torch.uint8


def lut_op_cases() -> list[np.ndarray]:
    """HWC images for the lookup-table ops: noise, nearly constant, two-valued, bright-only and constant ones."""
    rng = np.random.default_rng(0)
    cases = [np.full((32, 32, 3), v, np.uint8) for v in (0, 7, 255)]
    for k in range(40):
        a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        if k % 4 == 1:
            a = np.where(rng.random(a.shape) < 0.98, 200, a).astype(np.uint8)
        elif k % 4 == 2:
            a = (a // 128 * 255).astype(np.uint8)
        elif k % 4 == 3:
            a = rng.integers(250, 256, a.shape, dtype=np.uint8)
        cases.append(a)
    return cases


@pytest.mark.parametrize(
    ("op", "magnitudes", "pillow"),
    [
        ("AutoContrast", [0.0], lambda img, _: ImageOps.autocontrast(img)),
        ("Equalize", [0.0], lambda img, _: ImageOps.equalize(img)),
        ("Invert", [0.0], lambda img, _: ImageOps.invert(img)),
        ("Solarize", [0.0, 28.3, 113.3, 227.7, 255.0], ImageOps.solarize),
        ("Posterize", [4.0, 5.0, 6.0, 8.0], lambda img, m: ImageOps.posterize(img, int(m))),
    ],
)
def test_the_numpy_lookup_table_ops_give_pillows_results(op, magnitudes, pillow):
    for a in lut_op_cases():
        for m in magnitudes:
            out = OPS[op](a, m)
            assert out.dtype == np.uint8
            np.testing.assert_array_equal(out, np.asarray(pillow(Image.fromarray(a), m)), err_msg=f"{op} {m}")


@pytest.mark.parametrize("pad", [4, 0])
def test_the_training_crop_and_flip_are_a_plain_per_image_crop_and_flip(pad):
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    hp = Hyperparameters(crop_pad_px=pad, cutout_px=0, autoaugment=False)
    torch.manual_seed(5)
    out = train.augment(images, hp, None)
    torch.manual_seed(5)  # the same draws, in the same order, as augment makes them
    offsets = torch.randint(0, 2 * pad + 1, (64, 2)).tolist()
    flips = (torch.rand(64) < 0.5).tolist()
    padded = F.pad(images, (pad,) * 4, mode="reflect") if pad else images
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
        crop = padded[i, :, dy : dy + 32, dx : dx + 32]
        assert torch.equal(out[i], crop.flip(2) if flip else crop), i
    assert 0 < sum(flips) < 64 and out.is_contiguous()


def test_the_training_augmentation_applies_the_policy_image_by_image():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    hp = Hyperparameters(crop_pad_px=0, cutout_px=0)
    torch.manual_seed(7)
    out = train.augment(images, hp, AutoAugment())
    torch.manual_seed(7)
    torch.randint(0, 1, (32, 2))  # the crop offsets and flips augment draws before the policy's draws
    flips = (torch.rand(32) < 0.5).tolist()
    auto = AutoAugment()
    expected = torch.stack([auto(img.flip(2) if flip else img) for img, flip in zip(images, flips, strict=True)])
    assert torch.equal(out, expected)
    assert not torch.equal(out, torch.stack([img.flip(2) if f else img for img, f in zip(images, flips, strict=True)]))
