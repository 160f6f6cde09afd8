"""An ensemble of same-architecture networks run as one: every layer of the M members becomes one grouped layer.

Serving a single 32x32 image, a width-16 ResNet-9 spends most of its time in per-layer overhead, not in
arithmetic, so M networks one after another cost nearly M times one network. Stacked side by side, member k's
channels in the k-th block of every layer, they make one network of grouped convolutions (groups=M), per-channel
BatchNorm, and a block-diagonal head: one pass, the same outputs (`benchmarks/serve_latency.py --networks`).

Layers without parameters (ReLU, pooling, flatten, identity) act channel by channel and stay as they are; the
residual additions add channels to the same channels, so they stay within each member's block too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class FusedEnsembleError(ValueError):
    """The networks cannot be fused: different architectures, or a layer this module does not know."""


def _fuse_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    first = convs[0]
    m = len(convs)
    fused = nn.Conv2d(
        first.in_channels * m,
        first.out_channels * m,
        first.kernel_size,
        stride=first.stride,
        padding=first.padding,
        dilation=first.dilation,
        groups=first.groups * m,
        bias=first.bias is not None,
        padding_mode=first.padding_mode,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([c.weight for c in convs]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([c.bias for c in convs]))
    return fused


def _fuse_batchnorm(norms: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first = norms[0]
    fused = nn.BatchNorm2d(first.num_features * len(norms), eps=first.eps, affine=first.affine)
    with torch.no_grad():
        fused.running_mean.copy_(torch.cat([n.running_mean for n in norms]))
        fused.running_var.copy_(torch.cat([n.running_var for n in norms]))
        if first.affine:
            fused.weight.copy_(torch.cat([n.weight for n in norms]))
            fused.bias.copy_(torch.cat([n.bias for n in norms]))
    return fused


def _fuse_linear(linears: list[nn.Linear]) -> nn.Linear:
    first = linears[0]
    m = len(linears)
    fused = nn.Linear(first.in_features * m, first.out_features * m, bias=first.bias is not None)
    with torch.no_grad():
        fused.weight.copy_(torch.block_diag(*[lin.weight for lin in linears]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([lin.bias for lin in linears]))
    return fused


FUSERS = {nn.Conv2d: _fuse_conv, nn.BatchNorm2d: _fuse_batchnorm, nn.Linear: _fuse_linear}
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity)


class FusedEnsemble(nn.Module):
    """M eval-mode networks as one: (N, 3, H, W) images in, (M, N, classes) logits out, member by member."""

    def __init__(self, networks: list[nn.Module]):
        super().__init__()
        if not networks:
            raise FusedEnsembleError("no networks to fuse")
        self.members = len(networks)
        self.body = copy.deepcopy(networks[0]).eval()
        names = [name for name, _ in networks[0].named_modules()]
        for net in networks[1:]:
            if [name for name, _ in net.named_modules()] != names:
                raise FusedEnsembleError("the networks have different architectures")
        parts = [dict(net.named_modules()) for net in networks]
        for name, module in list(self.body.named_modules()):
            if not name:
                continue
            kind = type(module)
            if any(type(p[name]) is not kind for p in parts):
                raise FusedEnsembleError(f"layer {name} differs between the networks")
            shapes = {tuple((k, tuple(v.shape)) for k, v in p[name].state_dict().items()) for p in parts}
            if len(shapes) > 1:
                raise FusedEnsembleError(f"layer {name}'s shapes differ between the networks")
            if kind in FUSERS:
                parent_name, _, attribute = name.rpartition(".")
                parent = self.body.get_submodule(parent_name) if parent_name else self.body
                setattr(parent, attribute, FUSERS[kind]([p[name] for p in parts]).eval())
            elif not isinstance(module, CHANNELWISE) and not list(module.children()):
                raise FusedEnsembleError(f"layer {name} ({kind.__name__}) cannot be fused")
        # oneDNN's grouped convolutions are faster on channels-last tensors (and so are the single network's).
        self.body = self.body.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.repeat(1, self.members, 1, 1)  # member k reads channels 3k..3k+2: the same image
        out = self.body(x.contiguous(memory_format=torch.channels_last))
        return out.view(x.shape[0], self.members, -1).transpose(0, 1)
