"""SageMaker inference handlers (model_fn, input_fn, predict_fn, output_fn) for the bicycle/motorcycle model.

The same four functions the SageMaker PyTorch serving toolkit calls; local_model.serve calls them too.
Every way a request can be wrong raises a named `InferenceRequestError` carrying its HTTP status.

What the server accepts, and what it refuses (the same list as the workflow's, lambdas/contract.py):
- PNG and JPEG (camera MPO included), in any mode: grayscale, palette, RGBA/LA (alpha dropped), 1-bit,
  16-bit (scaled to 8 bits), CMYK (converted to RGB), any size from 1x1, resized to 32x32.
- Refused with InvalidImageError (400): every other format (GIF, BMP, WEBP, TIFF, SVG, ...; their decoders
  are never run on untrusted bytes), and truncated or corrupt data. Base64 text or a data: URI sent as the
  body is named as such. PNG text chunks beyond Pillow's MAX_TEXT_CHUNK (1 MB decompressed) are corrupt.
- Refused with ImageTooLargeError (413), from the header, before any pixel is decompressed: images that
  would decode to more than `max_pixels` pixels (SCONES_MAX_IMAGE_PIXELS). That counts what is decoded:
  a PNG's declared size, a JPEG's size after libjpeg's reduced (1/2..1/8) decode, so a 48 MP phone photo
  decodes as 0.8 MP and passes while a tiny PNG declaring 40000x40000 is refused. Pillow's own process-wide
  guard (Image.MAX_IMAGE_PIXELS: a warning above 89 MP declared, DecompressionBombError above 179 MP) is
  left as it is and also answers ImageTooLargeError.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from local_model.classifier import (
    CLASSES,
    IMAGE_SIZE,
    META_FILE,
    Classifier,
    ModelFormatError,
    load_model_dir,
    unpack_model_tar,
)
from local_model.settings import DEFAULT_MAX_IMAGE_PIXELS

logger = logging.getLogger(__name__)

SUPPORTED_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
JSON_CONTENT_TYPE = "application/json"
# The decoders we let Pillow use: the image formats the workflow accepts (lambdas/contract.py IMAGE_FORMATS;
# this container cannot import it, tests/unit/local_model/test_serve_hostile_inputs.py checks the two agree).
# Content types are only a hint (clients often send PNG as image/jpeg); the format is read from the bytes.
ACCEPTED_IMAGE_FORMATS = ("PNG", "JPEG")
_JPEG_FORMATS = ("JPEG", "MPO")  # Pillow opens cameras' multi-picture JPEGs (MPO) through its JPEG decoder
MODEL_TAR = "model.tar.gz"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class InferenceRequestError(Exception):
    """A request the model cannot answer; `status` is the HTTP status the server returns."""

    status = 400


class EmptyBodyError(InferenceRequestError):
    """The request has no body."""


class UnsupportedContentTypeError(InferenceRequestError):
    """The Content-Type is not one of SUPPORTED_CONTENT_TYPES."""

    status = 415


class UnsupportedAcceptError(InferenceRequestError):
    """The Accept header asks for something other than JSON."""

    status = 406


class InvalidImageError(InferenceRequestError):
    """The body is not a readable image: not an image at all, truncated or corrupt."""


class ImageTooLargeError(InferenceRequestError):
    """The image has more pixels than allowed (a decompression bomb or just far too big)."""

    status = 413


class BodyTooLargeError(InferenceRequestError):
    """The request body is larger than the configured limit."""

    status = 413


def media_type(header_value: str | None) -> str:
    """'Image/PNG; charset=x' -> 'image/png'."""
    return (header_value or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str | Path) -> Classifier:
    """Load the classifier from a model directory, or from the model.tar.gz inside it (unpacked into a
    temporary folder that is removed once the weights are in memory)."""
    model_dir = Path(model_dir)
    tar = None
    if model_dir.is_file() and model_dir.name.endswith(".tar.gz"):
        tar = model_dir
    elif model_dir.is_dir() and not (model_dir / META_FILE).exists() and (model_dir / MODEL_TAR).is_file():
        # SageMaker unpacks model.tar.gz for us; a local run may point at the training output instead.
        tar = model_dir / MODEL_TAR
    if tar is None:
        return _load(model_dir, model_dir)
    with tempfile.TemporaryDirectory(prefix="scones-model-") as unpacked:
        return _load(unpack_model_tar(tar, Path(unpacked)), tar)


def _load(model_dir: Path, source: Path) -> Classifier:
    classifier = load_model_dir(model_dir)
    if list(classifier.meta.classes) != list(CLASSES) or classifier.meta.image_size != IMAGE_SIZE:
        # The response is a bare [p_bicycle, p_motorcycle] list, so the class order is part of the contract.
        raise ModelFormatError(
            f"model in {source} predicts {classifier.meta.classes} at {classifier.meta.image_size} px; "
            f"this server answers {list(CLASSES)} at {IMAGE_SIZE} px"
        )
    classifier.networks = [fold_batchnorm(net) for net in classifier.networks]
    classifier.fuse()  # the members as one network of grouped layers: one pass per request (local_model/fused.py)
    logger.info("loaded %d-member %s from %s", len(classifier.networks), classifier.meta.architecture, source)
    return classifier


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it (same outputs, ~8% faster serving)."""
    for module in network.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return network


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert() clips 16-bit values at 255 (an all-white image); scale to 8 bits instead.
        pixels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    # RGBA/LA/PA/P with transparency: the alpha channel is dropped, as in the training images.
    return image.convert("RGB")


def declared_pixels(body: bytes) -> int:
    """Width x height from the image header (no pixel decoded); 0 when the header cannot be read."""
    try:
        with Image.open(io.BytesIO(body), formats=ACCEPTED_IMAGE_FORMATS) as image:
            return image.size[0] * image.size[1]
    except Exception:  # the decode proper names whatever is wrong
        return 0


def decode_image(body: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Image bytes -> (32, 32, 3) uint8 RGB array, refusing images that decode to more than `max_pixels`."""
    if not body:
        raise EmptyBodyError("the request body is empty; send the image bytes")
    try:
        image = Image.open(io.BytesIO(body), formats=ACCEPTED_IMAGE_FORMATS)
        width, height = image.size
        is_jpeg = image.format in _JPEG_FORMATS
        orientation = image.getexif().get(ImageOps.ExifTags.Base.Orientation, 1) if is_jpeg else 1
        if is_jpeg:
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))  # lets libjpeg decode big photos at 1/2..1/8 scale
        # Image.open and draft read only the header: this runs before any pixel is decompressed.
        decoded = image.size[0] * image.size[1]
        if decoded > max_pixels:
            scaled = f", {image.size[0]}x{image.size[1]} at the smallest decode" if decoded != width * height else ""
            raise ImageTooLargeError(
                f"image is {width}x{height} = {width * height} pixels{scaled}; the limit is {max_pixels} decoded pixels"
            )
        image.load()
        image = _to_rgb(image)
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, reducing_gap=3.0)
        if orientation != 1:
            # A square image rotates the same after resizing as before, and 32x32 is cheaper to rotate.
            image = _apply_orientation(image, orientation)
        return np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {e}") from e
    except InferenceRequestError:
        raise
    except Image.UnidentifiedImageError as e:
        raise InvalidImageError(
            f"body is not a readable image (accepted formats: {', '.join(ACCEPTED_IMAGE_FORMATS)}): "
            + describe_unreadable(body)
        ) from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as e:
        # Pillow reports truncated or corrupt data through all of these, depending on the decoder.
        raise InvalidImageError(f"image data is truncated or corrupt: {e}") from e


def describe_unreadable(body: bytes) -> str:
    """What a body no accepted decoder recognises most likely is, for the error message."""
    head = body[:64].lstrip()
    if head.startswith(b"data:"):
        return "it is a data: URI; send the raw image bytes, not text"
    if head[:1] in (b"{", b"["):
        return "it looks like JSON; send the raw image bytes with an image Content-Type"
    text = body[:4096].strip()
    if re.fullmatch(rb"[A-Za-z0-9+/=\s]+", text) and len(text) >= 8:
        try:
            decoded = base64.b64decode(re.sub(rb"\s", b"", text)[:12])
        except binascii.Error:
            decoded = b""
        if decoded.startswith((b"\x89PNG", b"\xff\xd8\xff")):
            return "it is base64 text of an image; send the decoded bytes"
    return f"{len(body)} bytes starting {body[:8]!r}"


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def check_content_type(content_type: str | None) -> None:
    """Raise UnsupportedContentTypeError unless the request's Content-Type is one we decode."""
    media = media_type(content_type)
    if media not in SUPPORTED_CONTENT_TYPES:
        shown = media or "no Content-Type"
        raise UnsupportedContentTypeError(
            f"unsupported content type {shown!r}; send one of {', '.join(SUPPORTED_CONTENT_TYPES)}"
        )


def input_fn(
    request_body: bytes, request_content_type: str | None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Request body -> a batch of one image, (1, 32, 32, 3) uint8 RGB."""
    check_content_type(request_content_type)
    if isinstance(request_body, str):
        raise InvalidImageError("body is text, not image bytes")
    return decode_image(bytes(request_body), max_pixels)[None]


def predict_fn(input_data: np.ndarray, model: Classifier) -> np.ndarray:
    """(N, 32, 32, 3) uint8 RGB -> (N, 2) probabilities [p_bicycle, p_motorcycle]."""
    return model.predict_proba(input_data)


def check_accept(accept: str | None) -> None:
    """Raise UnsupportedAcceptError unless the Accept header allows JSON (no header allows anything)."""
    if accept and not any(
        media_type(part) in ("", "*/*", "application/*", JSON_CONTENT_TYPE) for part in accept.split(",")
    ):
        raise UnsupportedAcceptError(f"cannot answer with {accept!r}; this model answers {JSON_CONTENT_TYPE}")


def output_fn(prediction: np.ndarray, accept: str | None = JSON_CONTENT_TYPE) -> tuple[str, str]:
    """Probabilities -> (JSON text, content type). One image gives `[p_bicycle, p_motorcycle]`."""
    check_accept(accept)
    rows = np.asarray(prediction, dtype=np.float64).tolist()
    return json.dumps(rows[0] if len(rows) == 1 else rows), JSON_CONTENT_TYPE
