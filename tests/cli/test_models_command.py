"""`resnetctl models`: the registry as a table and as JSON."""

from __future__ import annotations

import json

from resnetctl.models import count_parameters, create_model, list_models


def test_models_json_lists_every_model_with_measured_sizes(cli) -> None:
    outcome = cli("models", "--json")
    assert outcome.code == 0, outcome.stderr
    rows = {row["name"]: row for row in json.loads(outcome.stdout)}
    assert sorted(rows) == sorted(list_models())
    for name in ("resnet50", "plain34", "cifar_resnet56"):
        assert rows[name]["params"] == count_parameters(create_model(name))
    assert rows["resnet50"]["shortcut"] == "B" and rows["cifar_resnet56"]["shortcut"] == "A"
    assert rows["plain34"]["shortcut"] == "none"
    assert abs(rows["resnet152"]["macs"] / 11.3e9 - 1) < 0.03  # Table 1


def test_models_table_filters_by_family(cli) -> None:
    outcome = cli("models", "--family", "imagenet")
    assert outcome.code == 0
    assert "resnet152" in outcome.stdout and "cifar_resnet20" not in outcome.stdout
    assert "60.19M" in outcome.stdout  # ResNet-152's parameters, as Table 1 / torchvision


def test_models_rejects_unknown_family(cli) -> None:
    outcome = cli("models", "--family", "mnist")
    assert outcome.code == 2 and "--family 'mnist'" in outcome.stderr
