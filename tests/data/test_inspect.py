"""`resnetctl data inspect`: the report, its table and JSON forms, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnetctl.cli.app import app
from resnetctl.data import DataError
from resnetctl.data.inspect import inspect_dataset
from tests.data._helpers import index_folder, save, smooth_pixels


def _invoke(*args: str):
    result = CliRunner().invoke(app, ["data", "inspect", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = index_folder(tmp_path / "ds", train=6, val=3, classes=3)
    save(root / "train" / "c0" / "wide.png", smooth_pixels(10, 30, 0))
    (root / "val" / "c2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


def test_report_counts_sizes_and_unreadable_files(folder: Path) -> None:
    report = inspect_dataset(folder)
    assert report.classes == ["c0", "c1", "c2"] and report.usable
    train, val = report.splits
    assert (train.name, train.images, val.images) == ("train", 7, 3)
    assert train.per_class == {"c0": 3, "c1": 2, "c2": 2}
    broken = str(folder / "val" / "c2" / "broken.jpg")
    assert val.unreadable == [{"path": broken, "reason": "truncated JPEG (no end marker)"}]
    size = report.image_size
    assert size["sampled"] == 10
    assert (size["height"]["min"], size["height"]["max"]) == (8, 10)
    assert (size["width"]["min"], size["width"]["median"], size["width"]["max"]) == (8, 8, 30)


def test_cli_table(folder: Path) -> None:
    code, out, _ = _invoke(str(folder))
    assert code == 0
    assert "3 classes" in out and "c2" in out
    assert "broken.jpg: truncated JPEG" in out
    assert "min 8 x 8" in out and "max 10 x 30" in out


def test_cli_json(folder: Path) -> None:
    code, out, _ = _invoke(str(folder), "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["usable"] is True
    assert [s["images"] for s in payload["splits"]] == [7, 3]


def test_cli_reports_class_mismatch_with_exit_1(folder: Path) -> None:
    save(folder / "val" / "extra" / "x.png", smooth_pixels(8, 8, 1))
    code, out, _ = _invoke(str(folder), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert len(problems) == 1 and "extra" in problems[0]


def test_single_split_folder(folder: Path) -> None:
    report = inspect_dataset(folder / "train")
    assert [s.images for s in report.splits] == [7] and not report.usable


def test_missing_path_exits_2_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, out, err = _invoke(str(missing))
    assert code == 2 and out == ""
    assert f"{missing}: no such file or folder" in err
    with pytest.raises(DataError):
        inspect_dataset(missing)
