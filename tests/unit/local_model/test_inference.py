"""Unit tests of the SageMaker inference handlers: model loading, decoding every image kind, named errors."""

from __future__ import annotations

import io
import json
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

from local_model import inference
from local_model.classifier import ModelFormatError, ModelMeta, load_model_dir, pack_model_tar, save_model_dir
from local_model.inference import (
    EmptyBodyError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)
from local_model.model import ResNet9
from tests.helpers.image_samples import encode, jpeg_rgb, png_claiming_size, png_rgba, random_pixels, truncated

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(model_dir):
    return inference.model_fn(model_dir)


# model_fn


def test_model_fn_folds_batchnorm_without_changing_predictions(model_dir, model):
    reference = load_model_dir(model_dir)
    images = np.stack([random_pixels(seed=s) for s in range(8)])
    np.testing.assert_allclose(model.predict_proba(images), reference.predict_proba(images), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.networks[0].modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in reference.networks[0].modules())


def test_model_fn_loads_model_tar_gz_given_as_file_or_inside_the_directory(model_dir, tmp_path, monkeypatch):
    tar = pack_model_tar(model_dir, tmp_path / "only-tar" / "model.tar.gz")
    image = random_pixels()[None]
    expected = inference.model_fn(model_dir).predict_proba(image)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for source in (tar, tar.parent):
        np.testing.assert_allclose(inference.model_fn(source).predict_proba(image), expected, atol=1e-6)
    assert list(scratch.iterdir()) == []  # the unpacked copies are removed once loaded


def test_model_fn_names_the_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match=r"model\.json"):
        inference.model_fn(tmp_path)


def test_model_fn_refuses_a_model_whose_classes_break_the_response_contract(tmp_path):
    save_model_dir(tmp_path, [ResNet9(width=4)], ModelMeta(width=4, classes=["motorcycle", "bicycle"]))
    with pytest.raises(ModelFormatError, match="bicycle"):
        inference.model_fn(tmp_path)


# input_fn: good images of any format, size and mode


def test_rgba_png_keeps_the_rgb_pixels_exactly():
    body = png_rgba(seed=3)
    expected = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    batch = inference.input_fn(body, "image/png")
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], expected)
    assert batch.flags.writeable


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/x-image", "Image/PNG; q=1"])
def test_every_supported_content_type_is_accepted(content_type):
    assert inference.input_fn(png_rgba(), content_type).shape == (1, 32, 32, 3)


def _mode_samples():
    gray = Image.fromarray(random_pixels(40, 50, 1))
    rgba = Image.fromarray(random_pixels(20, 20, 4))
    palette = Image.fromarray(random_pixels(64, 64, 3)).quantize(16)
    palette.info["transparency"] = 0
    return {
        "L": encode(gray, "PNG"),
        "LA": encode(Image.merge("LA", [gray, gray]), "PNG"),
        "1": encode(gray.convert("1"), "PNG"),
        "P+transparency": encode(palette, "PNG"),
        "RGBA-large": encode(rgba.resize((300, 200)), "PNG"),
        "CMYK-jpeg": encode(Image.fromarray(random_pixels(50, 50, 3)).convert("CMYK"), "JPEG"),
        "gray-jpeg": encode(gray, "JPEG"),
        "I;16-png": encode(Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)), "PNG"),
        "jpeg-photo": jpeg_rgb(1200, 1600),
        "mpo-camera-jpeg": encode(
            Image.fromarray(random_pixels(60, 80, 3)), "MPO", save_all=True, append_images=[gray]
        ),
        "tiny-1x1": encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
    }


@pytest.mark.parametrize("name", list(_mode_samples()))
def test_any_mode_and_size_becomes_a_32x32_rgb_image(name):
    batch = inference.input_fn(_mode_samples()[name], "application/x-image")
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8


def test_tiny_image_is_upscaled_with_its_colour():
    body = encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")
    assert (inference.input_fn(body, "image/png")[0] == [10, 200, 30]).all()


def test_sixteen_bit_grayscale_is_scaled_not_clipped_to_white():
    pixels = np.full((32, 32), 32768, dtype=np.uint16)
    pixels[:16] = 65535
    batch = inference.input_fn(encode(Image.fromarray(pixels), "PNG"), "image/png")[0]
    assert (batch[:16] == 255).all() and (batch[16:] == 128).all()


def test_palette_image_keeps_its_colours():
    image = Image.new("P", (32, 32))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 16, 32, 32))  # bottom half: palette entry 1 (blue)
    batch = inference.input_fn(encode(image, "PNG"), "image/png")[0]
    assert (batch[:16] == [255, 0, 0]).all() and (batch[16:] == [0, 0, 255]).all()


def test_jpeg_exif_orientation_is_applied():
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)  # stored left half red, right half blue
    pixels[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the stored left becomes the top
    body = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif)
    batch = inference.input_fn(body, "image/jpeg")[0].astype(int)
    top, bottom = batch[:12].mean(axis=(0, 1)), batch[20:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


# input_fn: every bad input gets its named error


def test_empty_body_is_an_empty_body_error():
    with pytest.raises(EmptyBodyError) as error:
        inference.input_fn(b"", "image/png")
    assert error.value.status == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "", None, "image/svg+xml"])
def test_unsupported_content_type_is_415(content_type):
    with pytest.raises(UnsupportedContentTypeError, match="image/png") as error:
        inference.input_fn(png_rgba(), content_type)
    assert error.value.status == 415


@pytest.mark.parametrize("body", [b"hello, I am not an image", bytes(1000)], ids=["text", "zeros"])
def test_non_image_is_an_invalid_image_error(body):
    with pytest.raises(InvalidImageError, match="not a readable image") as error:
        inference.input_fn(body, "image/png")
    assert error.value.status == 400


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_png_is_an_invalid_image_error(keep):
    with pytest.raises(InvalidImageError):
        inference.input_fn(truncated(png_rgba(), keep), "image/png")


def test_truncated_jpeg_is_an_invalid_image_error():
    with pytest.raises(InvalidImageError, match=r"truncated|corrupt"):
        inference.input_fn(truncated(jpeg_rgb(64, 64), 0.5), "image/jpeg")


def test_png_signature_followed_by_garbage_is_an_invalid_image_error():
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        inference.input_fn(b"\x89PNG\r\n\x1a\n garbage after the signature", "image/png")


def test_corrupt_png_data_is_an_invalid_image_error():
    body = bytearray(png_rgba())
    body[60:80] = bytes(20)  # inside the IDAT chunk: its CRC no longer matches
    with pytest.raises(InvalidImageError):
        inference.input_fn(bytes(body), "image/png")


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "BMP", "WEBP", "ICO", "PPM"])
def test_formats_outside_the_accepted_list_are_refused(fmt):
    # Pillow decodes all of these; the server runs only the PNG and JPEG decoders on untrusted bytes.
    body = encode(Image.fromarray(random_pixels()), fmt)
    with pytest.raises(InvalidImageError, match="accepted formats: PNG, JPEG"):
        inference.input_fn(body, "application/x-image")


def test_text_body_is_refused():
    with pytest.raises(InvalidImageError):
        inference.input_fn("not bytes", "image/png")


def test_decompression_bomb_beyond_pillows_own_limit_is_image_too_large():
    # 40000 x 40000 = 1.6 gigapixels: Pillow itself raises DecompressionBombError on open.
    with pytest.raises(ImageTooLargeError, match="decompression bomb") as error:
        inference.input_fn(png_claiming_size(40000, 40000), "image/png")
    assert error.value.status == 413


def test_image_over_our_pixel_limit_is_refused_before_decoding():
    # 5000 x 5000 passes Pillow's 89-megapixel guard but not ours; the claimed pixels are never decoded.
    with pytest.raises(ImageTooLargeError, match="5000x5000"):
        inference.input_fn(png_claiming_size(5000, 5000), "image/png")


def test_the_pixel_limit_counts_a_jpegs_reduced_decode():
    # libjpeg decodes at 1/8 scale here: 1600x1200 declared, 200x150 decoded.
    photo = jpeg_rgb(1200, 1600)
    assert inference.input_fn(photo, "image/jpeg", max_pixels=200 * 150).shape == (1, 32, 32, 3)
    with pytest.raises(ImageTooLargeError, match="1600x1200 = 1920000 pixels, 200x150 at the smallest decode"):
        inference.input_fn(photo, "image/jpeg", max_pixels=200 * 150 - 1)
    # A PNG has no reduced decode: its declared size counts.
    with pytest.raises(ImageTooLargeError, match="300x300"):
        inference.input_fn(encode(Image.new("RGB", (300, 300)), "PNG"), "image/png", max_pixels=200 * 150)


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageTooLargeError, match="limit is 100 decoded pixels"):
        inference.input_fn(png_rgba(), "image/png", max_pixels=100)
    assert inference.input_fn(png_rgba(), "image/png", max_pixels=32 * 32).shape == (1, 32, 32, 3)


# predict_fn and output_fn


def test_predict_fn_returns_probabilities_per_image(model):
    probs = inference.predict_fn(np.stack([random_pixels(seed=s) for s in range(3)]), model)
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert ((probs > 0) & (probs < 1)).all()


def test_output_fn_answers_a_single_image_with_a_bare_pair(model):
    probs = inference.predict_fn(inference.input_fn(png_rgba(), "image/png"), model)
    text, content_type = inference.output_fn(probs, "application/json")
    answer = json.loads(text)
    assert content_type == "application/json"
    assert isinstance(answer, list) and len(answer) == 2 and all(isinstance(p, float) for p in answer)
    assert answer == pytest.approx(probs[0].tolist())
    assert sum(answer) == pytest.approx(1.0, abs=1e-6)


def test_output_fn_answers_a_batch_with_a_list_of_pairs():
    text, _ = inference.output_fn(np.array([[0.25, 0.75], [0.5, 0.5]]), None)
    assert json.loads(text) == [[0.25, 0.75], [0.5, 0.5]]


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "text/html, application/*;q=0.8"])
def test_output_fn_accepts_anything_that_allows_json(accept):
    assert inference.output_fn(np.array([[0.5, 0.5]]), accept)[1] == "application/json"


@pytest.mark.parametrize("accept", ["text/csv", "image/png", "application/x-recordio-protobuf"])
def test_output_fn_refuses_other_accept_types_with_406(accept):
    with pytest.raises(UnsupportedAcceptError, match="application/json") as error:
        inference.output_fn(np.array([[0.5, 0.5]]), accept)
    assert error.value.status == 406


def test_batched_flip_tta_equals_averaging_separate_passes(model_dir):
    # Classifier.predict_proba runs both flips as one batch; check it against the plain definition.
    classifier = load_model_dir(model_dir)
    images = np.stack([random_pixels(seed=s) for s in range(3)])
    x = classifier.normalize(images)
    with torch.inference_mode():
        net = classifier.networks[0]
        expected = (torch.softmax(net(x), dim=1) + torch.softmax(net(x.flip(3)), dim=1)) / 2
    np.testing.assert_allclose(classifier.predict_proba(images), expected.numpy(), atol=1e-6)
