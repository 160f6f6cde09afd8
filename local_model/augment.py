"""AutoAugment's CIFAR-10 policy (Cubuk et al. 2019, "AutoAugment: Learning Augmentation Policies from Data")
done with Pillow and numpy, drawing its randomness from torch's generator so a seed fixes the whole training run.

It exists because torchvision cannot be installed beside the CPU-only torch build: PyPI's torchvision
wheels link libtorch_cuda.so and fail to import ("operator torchvision::nms does not exist"). The
sub-policies, magnitude bins and ranges are those of torchvision's AutoAugmentPolicy.CIFAR10, which
the training recipe was tuned with.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance

NUM_BINS = 10  # magnitude bins 0..9, spread linearly over each op's range

# 25 sub-policies of two (op, probability, magnitude bin) steps; None = the op has no magnitude.
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

# op -> (magnitude at bin 0, at the last bin, signed: negated half of the time). Shears are the
# tangent of the angle, translations a fraction of the image side (150 px of the paper's 331),
# rotation degrees, the enhance ops 1 + magnitude as the factor, Posterize bits, Solarize the threshold.
RANGES = {
    "ShearX": (0.0, 0.3, True),
    "ShearY": (0.0, 0.3, True),
    "TranslateX": (0.0, 150 / 331, True),
    "TranslateY": (0.0, 150 / 331, True),
    "Rotate": (0.0, 30.0, True),
    "Brightness": (0.0, 0.9, True),
    "Color": (0.0, 0.9, True),
    "Contrast": (0.0, 0.9, True),
    "Sharpness": (0.0, 0.9, True),
    "Posterize": (8, 4, False),
    "Solarize": (255.0, 0.0, False),
}


def magnitude(op: str, level: int, size: tuple[int, int]) -> float:
    """The unsigned magnitude of `op` at bin `level` for an image of `size` (width, height)."""
    low, high, _ = RANGES[op]
    value = low + (high - low) * level / (NUM_BINS - 1)
    if op in ("TranslateX", "TranslateY"):
        return float(int(value * size[0 if op == "TranslateX" else 1]))  # whole pixels
    return float(round(value)) if op == "Posterize" else value


def _pillow(op):
    """An op done by Pillow, as a function of an HWC uint8 array (and the magnitude) to a new one."""
    return lambda a, m: np.asarray(op(Image.fromarray(a), m))


def _affine(img: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    # Pillow maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f); outside is black.
    return img.transform(img.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=0)


def _per_channel_lut(a: np.ndarray, luts: list[np.ndarray]) -> np.ndarray:
    out = np.empty_like(a)
    for c, lut in enumerate(luts):
        out[..., c] = lut[a[..., c]]
    return out


IDENTITY = np.arange(256)


def autocontrast(a: np.ndarray) -> np.ndarray:
    """Pillow's ImageOps.autocontrast (no cutoff) of an HWC uint8 array, in numpy: each channel stretched so its
    darkest value becomes 0 and its brightest 255. The same lookup tables, built without Pillow's Python loops
    (tests/unit/local_model/test_augment.py compares the two)."""
    luts = []
    for c in range(a.shape[-1]):
        present = np.flatnonzero(np.bincount(a[..., c].ravel(), minlength=256))
        lo, hi = int(present[0]), int(present[-1])
        if hi <= lo:
            luts.append(IDENTITY)
            continue
        scale = 255.0 / (hi - lo)
        luts.append(np.clip((IDENTITY * scale + -lo * scale).astype(np.int64), 0, 255))
    return _per_channel_lut(a, luts).astype(np.uint8)


def equalize(a: np.ndarray) -> np.ndarray:
    """Pillow's ImageOps.equalize of an HWC uint8 array, in numpy: each channel's histogram made uniform."""
    luts = []
    for c in range(a.shape[-1]):
        h = np.bincount(a[..., c].ravel(), minlength=256)
        present = h[h > 0]
        step = (int(present.sum()) - int(present[-1])) // 255 if len(present) > 1 else 0
        if not step:
            luts.append(IDENTITY)
            continue
        before = np.concatenate(([0], np.cumsum(h)[:-1]))  # pixels below each value
        luts.append(np.clip((step // 2 + before) // step, 0, 255))
    return _per_channel_lut(a, luts).astype(np.uint8)


# Each op maps an HWC uint8 array and a signed magnitude to a new array. The geometric and enhance ops are
# Pillow's; the five lookup-table ops are numpy (Pillow builds their tables in Python, which made them half of
# the augmentation's time), with the same results as Pillow's.
OPS = {
    "ShearX": _pillow(lambda img, m: _affine(img, (1, m, 0, 0, 1, 0))),
    "ShearY": _pillow(lambda img, m: _affine(img, (1, 0, 0, m, 1, 0))),
    "TranslateX": _pillow(lambda img, m: _affine(img, (1, 0, -m, 0, 1, 0))),  # m > 0 moves right
    "TranslateY": _pillow(lambda img, m: _affine(img, (1, 0, 0, 0, 1, -m))),  # m > 0 moves down
    "Rotate": _pillow(lambda img, m: img.rotate(m, Image.Resampling.NEAREST, fillcolor=0)),
    "Brightness": _pillow(lambda img, m: ImageEnhance.Brightness(img).enhance(1 + m)),
    "Color": _pillow(lambda img, m: ImageEnhance.Color(img).enhance(1 + m)),
    "Contrast": _pillow(lambda img, m: ImageEnhance.Contrast(img).enhance(1 + m)),
    "Sharpness": _pillow(lambda img, m: ImageEnhance.Sharpness(img).enhance(1 + m)),
    "Posterize": lambda a, m: a & np.uint8(~(2 ** (8 - int(m)) - 1) & 0xFF),
    "Solarize": lambda a, m: np.where(a < m, a, 255 - a).astype(np.uint8),
    "AutoContrast": lambda a, _: autocontrast(a),
    "Equalize": lambda a, _: equalize(a),
    "Invert": lambda a, _: 255 - a,
}


class AutoAugment:
    """Picks one sub-policy per image and applies each of its two ops with the op's probability."""

    def __init__(self, policy: tuple = CIFAR10_POLICY) -> None:
        self.policy = policy

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Augment one CHW uint8 RGB image; returns a new CHW uint8 tensor (or `image` if no op fired)."""
        out = self.augment_hwc(image.permute(1, 2, 0).numpy())
        return image if out is None else torch.from_numpy(np.array(out)).permute(2, 0, 1)

    def augment_hwc(self, image: np.ndarray) -> np.ndarray | None:
        """Augment one HWC uint8 RGB array; a new array, or None if no op fired. Draws from torch's generator
        exactly as many numbers, in the same order, whatever fires."""
        sub_policy = self.policy[int(torch.randint(len(self.policy), ()))]
        draws = torch.rand(len(sub_policy), 2).tolist()  # per step: does it fire, is it negated
        out = None
        for (op, probability, level), (fire, sign) in zip(sub_policy, draws, strict=True):
            if fire >= probability:
                continue
            if out is None:
                out = np.ascontiguousarray(image)
            m = 0.0 if level is None else magnitude(op, level, (out.shape[1], out.shape[0]))
            if level is not None and RANGES[op][2] and sign < 0.5:
                m = -m
            out = OPS[op](out, m)
        return out
