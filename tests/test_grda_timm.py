"""grda.timm: GRDA built by timm's optimizer factory after grda.timm.register(), with timm's parameter grouping."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

timm = pytest.importorskip("timm")

from timm.optim import create_optimizer_v2, list_optimizers  # noqa: E402

import grda  # noqa: E402
import grda.timm  # noqa: E402
from grda import GRDA  # noqa: E402


def small_model():
    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=3)  # BatchNorm and conv weights


def train(model, opt, steps=4):
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 3, (4,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.slow
def test_create_optimizer_v2_builds_grda_that_trains_like_grda_built_by_hand(caplog):
    grda.timm.register()
    with caplog.at_level(logging.WARNING):
        grda.timm.register()  # idempotent: no "already registered" warning
    assert "already registered" not in caplog.text
    assert "grda" in list_optimizers()
    model = small_model()
    twin = copy.deepcopy(model)
    opt = create_optimizer_v2(model, opt="grda", lr=0.05, c=0.5, mu=0.51)
    assert type(opt) is GRDA
    # timm's default weight_decay=0 puts every parameter, BatchNorm and biases included, into one group: they are
    # thresholded alike, as in the paper's runs
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["lr"], group["c"], group["mu"], group["weight_decay"]) == (0.05, 0.5, 0.51, 0.0)
    assert len(group["params"]) == len(list(model.parameters()))
    by_hand = GRDA(twin.parameters(), lr=0.05, c=0.5, mu=0.51)
    train(model, opt)
    train(twin, by_hand)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    assert grda.sparsity(model) > 0.01
    bn = [p for n, p in model.named_parameters() if "bn" in n]
    assert bn and sum(int((p == 0).sum()) for p in bn) > 0, "BatchNorm parameters are pruned too"


def test_weight_decay_is_refused_with_a_clear_error():
    grda.timm.register()
    with pytest.raises(ValueError, match="GRDA has no weight decay.*raise c"):
        create_optimizer_v2(small_model(), opt="grda", lr=0.05, weight_decay=1e-4)


@pytest.mark.slow
def test_dense_1d_groups_keeps_biases_and_norms_dense():
    grda.timm.register()
    model = small_model()
    opt = create_optimizer_v2(model, opt="grda", lr=0.05, c=0.5, mu=0.51, param_group_fn=grda.timm.dense_1d_groups)
    assert [g["c"] for g in opt.param_groups] == [0.5, 0.0]
    train(model, opt)
    dense = [p for p in model.parameters() if p.ndim <= 1]
    pruned = [p for p in model.parameters() if p.ndim > 1]
    assert sum(int((p == 0).sum()) for p in dense) == 0
    assert sum(int((p == 0).sum()) for p in pruned) > 0
