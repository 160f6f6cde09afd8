"""Image bodies for the serving tests: good images in many formats and modes, and the bad ones clients send."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from local_model.classifier import ModelMeta, save_model_dir
from local_model.model import ResNet9


def make_model_dir(path: Path, width: int = 4, seed: int = 0) -> Path:
    """A small untrained model in the real model-directory format, with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = ResNet9(width=width)
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    save_model_dir(path, [net], ModelMeta(width=width))
    return path


def random_pixels(height: int = 32, width: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_rgba(seed: int = 0, size: int = 32) -> bytes:
    """Like the staged training images: 32x32 RGBA PNG with full alpha."""
    pixels = random_pixels(size, size, 4, seed)
    pixels[..., 3] = 255
    return encode(Image.fromarray(pixels), "PNG")


def jpeg_rgb(height: int = 480, width: int = 640, seed: int = 0, **options) -> bytes:
    return encode(Image.fromarray(random_pixels(height, width, 3, seed)), "JPEG", quality=90, **options)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels: a decompression bomb's header."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 8)  # a few rows; the rest would be missing
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def truncated(body: bytes, keep: float = 0.5) -> bytes:
    return body[: int(len(body) * keep)]
