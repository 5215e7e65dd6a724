"""SGD parameter groups: BN parameters and biases exempt from weight decay only when asked."""

from __future__ import annotations

import torch

from resnetctl.spec.train import SGDSpec
from resnetctl.train.optim import build_optimizer, param_groups
from tests.train._helpers import tiny_model


def test_without_exemption_everything_decays() -> None:
    model = tiny_model()
    groups = param_groups(model, 1e-4, no_weight_decay_on_bn=False)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_bn_and_biases_are_exempt_when_asked() -> None:
    model = tiny_model()
    decay, no_decay = param_groups(model, 1e-4, no_weight_decay_on_bn=True)
    conv, bn, linear = model[0], model[1], model[5]
    assert {id(p) for p in decay["params"]} == {id(conv.weight), id(linear.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(bn.weight), id(bn.bias), id(linear.bias)}
    assert no_decay["weight_decay"] == 0.0


def test_optimizer_carries_momentum_nesterov_and_decay() -> None:
    spec = SGDSpec(momentum=0.8, weight_decay=5e-4, nesterov=True, no_weight_decay_on_bn=True)
    opt = build_optimizer(tiny_model(), spec, lr=0.3)
    assert isinstance(opt, torch.optim.SGD)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert all(g["momentum"] == 0.8 and g["nesterov"] and g["lr"] == 0.3 for g in opt.param_groups)
