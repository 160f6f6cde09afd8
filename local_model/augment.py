"""AutoAugment's CIFAR-10 policy (Cubuk et al. 2019, "AutoAugment: Learning Augmentation Policies from Data")
done with Pillow, drawing its randomness from torch's generator so a seed fixes the whole training run.

It exists because torchvision cannot be installed beside the CPU-only torch build: PyPI's torchvision
wheels link libtorch_cuda.so and fail to import ("operator torchvision::nms does not exist"). The
sub-policies, magnitude bins and ranges are those of torchvision's AutoAugmentPolicy.CIFAR10, which
the training recipe was tuned with.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

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


def _affine(img: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    # Pillow maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f); outside is black.
    return img.transform(img.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=0)


OPS = {
    "ShearX": lambda img, m: _affine(img, (1, m, 0, 0, 1, 0)),
    "ShearY": lambda img, m: _affine(img, (1, 0, 0, m, 1, 0)),
    "TranslateX": lambda img, m: _affine(img, (1, 0, -m, 0, 1, 0)),  # m > 0 moves right
    "TranslateY": lambda img, m: _affine(img, (1, 0, 0, 0, 1, -m)),  # m > 0 moves down
    "Rotate": lambda img, m: img.rotate(m, Image.Resampling.NEAREST, fillcolor=0),
    "Brightness": lambda img, m: ImageEnhance.Brightness(img).enhance(1 + m),
    "Color": lambda img, m: ImageEnhance.Color(img).enhance(1 + m),
    "Contrast": lambda img, m: ImageEnhance.Contrast(img).enhance(1 + m),
    "Sharpness": lambda img, m: ImageEnhance.Sharpness(img).enhance(1 + m),
    "Posterize": lambda img, m: ImageOps.posterize(img, int(m)),
    "Solarize": lambda img, m: ImageOps.solarize(img, m),
    "AutoContrast": lambda img, _: ImageOps.autocontrast(img),
    "Equalize": lambda img, _: ImageOps.equalize(img),
    "Invert": lambda img, _: ImageOps.invert(img),
}


class AutoAugment:
    """Picks one sub-policy per image and applies each of its two ops with the op's probability."""

    def __init__(self, policy: tuple = CIFAR10_POLICY) -> None:
        self.policy = policy

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Augment one CHW uint8 RGB image; returns a new CHW uint8 tensor (or `image` if no op fired)."""
        sub_policy = self.policy[int(torch.randint(len(self.policy), ()))]
        draws = torch.rand(len(sub_policy), 2).tolist()  # per step: does it fire, is it negated
        img = None  # converted to Pillow only when an op fires
        for (op, probability, level), (fire, sign) in zip(sub_policy, draws, strict=True):
            if fire >= probability:
                continue
            if img is None:
                img = Image.fromarray(image.permute(1, 2, 0).numpy())
            m = 0.0 if level is None else magnitude(op, level, img.size)
            if level is not None and RANGES[op][2] and sign < 0.5:
                m = -m
            img = OPS[op](img, m)
        return image if img is None else torch.from_numpy(np.array(img)).permute(2, 0, 1)
