"""Unit tests of the fused ensemble: M networks as one network of grouped layers, with the members' outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from local_model.classifier import Classifier, ModelMeta
from local_model.fused import FusedEnsemble, FusedEnsembleError
from local_model.inference import fold_batchnorm
from local_model.model import ResNet9

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_looking(seed: int) -> ResNet9:
    """An eval-mode ResNet9 whose BatchNorm statistics and affine parameters are not the defaults, so that a
    member's BatchNorm mixed up with another's would change the outputs."""
    torch.manual_seed(seed)
    net = ResNet9()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("members", [1, 2, 3])
@pytest.mark.parametrize("folded", [False, True], ids=["batchnorm", "folded"])
def test_fused_outputs_are_each_members_outputs(members, folded):
    nets = [trained_looking(seed) for seed in range(members)]
    if folded:
        nets = [fold_batchnorm(net) for net in nets]
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        expected = torch.stack([net(x) for net in nets])
        got = FusedEnsemble(nets)(x)
    assert got.shape == (members, 5, 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_a_fused_classifier_gives_the_same_logits_in_the_same_order():
    nets = [fold_batchnorm(trained_looking(seed)) for seed in range(2)]
    classifier = Classifier(nets, ModelMeta())
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    separate = classifier.logits(images)
    fused = classifier.fuse().logits(images)
    assert fused.shape == separate.shape == (4, 4, 2)  # (members * flips, images, classes)
    torch.testing.assert_close(fused, separate, atol=1e-5, rtol=1e-4)
    # The members disagree, so an order mixed up between members or flips would show.
    assert not torch.allclose(separate[0], separate[2], atol=1e-3)
    assert not torch.allclose(separate[0], separate[1], atol=1e-3)


def test_networks_of_different_widths_are_refused_by_name():
    with pytest.raises(FusedEnsembleError, match="differ"):
        FusedEnsemble([ResNet9(width=16), ResNet9(width=8)])


def test_a_layer_that_mixes_channels_is_refused_by_name():
    class Mixer(nn.Module):  # a parameter-free leaf that is not channel by channel
        def forward(self, x):
            return x.mean(1, keepdim=True)

    nets = [nn.Sequential(nn.Conv2d(3, 4, 3), Mixer()) for _ in range(2)]
    with pytest.raises(FusedEnsembleError, match=r"layer 1 \(Mixer\) cannot be fused"):
        FusedEnsemble(nets)


def test_no_networks_is_refused():
    with pytest.raises(FusedEnsembleError, match="no networks"):
        FusedEnsemble([])
