"""Unit tests of the classifier's test-time views: flips and shifted copies, scored member by member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from local_model.classifier import Classifier, ModelMeta
from local_model.model import ResNet9
from local_model.train import HyperparameterError, Hyperparameters, model_meta

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def classifier(**meta) -> Classifier:
    torch.manual_seed(0)
    return Classifier([ResNet9().eval(), ResNet9().eval()], ModelMeta(**meta))


@pytest.mark.parametrize(
    ("meta", "count"),
    [({"flip_tta": False}, 1), ({}, 2), ({"tta_shift_px": 1}, 10), ({"flip_tta": False, "tta_shift_px": 2}, 5)],
)
def test_each_member_scores_every_view(meta, count):
    c = classifier(**meta)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert c.view_count() == count
    assert c.logits(images).shape == (2 * count, 3, 2)
    assert c.fuse().logits(images).shape == (2 * count, 3, 2)


def test_shifted_views_are_the_image_moved_diagonally_with_reflected_edges():
    c = classifier(tta_shift_px=2)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    views = c.views(x).view(10, 2, 3, 32, 32)
    torch.testing.assert_close(views[0], x)
    torch.testing.assert_close(views[1], x.flip(3))
    # The first shifted view is the padded image's top-left crop: the image moved 2 px down and right.
    torch.testing.assert_close(views[2][:, :, 2:, 2:], x[:, :, :30, :30])
    torch.testing.assert_close(views[2][:, :, 0, 2:], x[:, :, 2, :30])  # row -2 reflects row 2
    # The last is the bottom-right crop of the flipped image: moved 2 px up and left.
    torch.testing.assert_close(views[9][:, :, :30, :30], x.flip(3)[:, :, 2:, 2:])


def test_training_writes_the_views_into_the_model_description():
    assert model_meta(Hyperparameters(tta_shift_px=1)).tta_shift_px == 1
    assert model_meta(Hyperparameters()).tta_shift_px == 0


@pytest.mark.parametrize("value", ["-1", "9"])
def test_a_shift_out_of_range_is_refused_by_name(value):
    with pytest.raises(HyperparameterError, match="tta_shift_px"):
        Hyperparameters.from_dict({"tta_shift_px": value})
