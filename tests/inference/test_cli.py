"""`resnetctl eval | export | predict` end to end, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnetctl.cli.app import app
from tests.inference.conftest import COLOURS, colour_image


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow  # an embedded Ray
def test_eval_json_has_every_protocol(colour_run: tuple[Path, Path]) -> None:
    code, stdout, stderr = run("eval", str(colour_run[1]), "--json", "--batch-size", "4")
    assert code == 0, stderr
    payload = json.loads(stdout)
    assert [r["protocol"] for r in payload["results"]] == ["center", "ten_crop", "multi_scale"]
    # Every image once, by as many workers as the machine has CPUs (at most one per image).
    assert {r["images"] for r in payload["results"]} == {8}
    assert payload["workers"] >= 1 and payload["device"] == "cpu"
    assert all(r["images_per_second"] > 0 for r in payload["results"])
    # A checkpoint outside any run has no MLflow run to log to.
    assert payload["logged"] is False


@pytest.mark.slow  # an embedded Ray
def test_eval_on_another_folder_matches_classes_by_name(
    colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # Only the red class, as a flat folder of class folders: label 0 here is output 1.
    for i in range(3):
        colour_image(tmp_path / "red" / f"{i}.png", COLOURS["red"], seed=500 + i)
    code, stdout, stderr = run(
        "eval", str(colour_run[1]), "--data", str(tmp_path), "-p", "center", "--json"
    )
    assert code == 0, stderr
    (result,) = json.loads(stdout)["results"]
    assert result["images"] == 3 and result["top1_error_pct"] == 0.0


def test_predict_and_export_json(colour_run: tuple[Path, Path], tmp_path: Path) -> None:
    blue = colour_image(tmp_path / "b.png", COLOURS["blue"], seed=7)
    code, stdout, stderr = run("predict", str(colour_run[1]), str(blue), "--json")
    assert code == 0, stderr
    (prediction,) = json.loads(stdout)["predictions"]
    assert prediction["top"][0]["label"] == "blue"
    code, stdout, stderr = run("predict", str(colour_run[1]), str(blue), "--top", "1")
    assert code == 0 and "blue" in stdout
    # Not a terminal: no progress bar, no control codes.
    assert "img/s" not in stderr and "\x1b[" not in stderr
    code, stdout, stderr = run(
        "export", str(colour_run[1]), "-f", "pt2", "-o", str(tmp_path / "m.pt2"), "--json"
    )
    assert code == 0, stderr
    payload = json.loads(stdout)
    assert payload["max_abs_difference"] < 1e-4 and payload["classes"] == ["blue", "red"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "no-such-run"), "no-such-run"),
        (("export", "no-such-run"), "no-such-run"),
        (("predict", "no-such-run", __file__), "no-such-run"),
        (("export", "x", "--format", "tflite"), "unknown format 'tflite'"),
        (("eval", "x", "-p", "twelve_crop"), "unknown protocol 'twelve_crop'"),
        (("eval", "x", "--address", "http://127.0.0.1:8265"), "not the Jobs API"),
        (("eval", "x", "--address", "127.0.0.1:1"), "nothing answers at the Ray cluster"),
        (("eval", "x", "--workers", "0"), "--workers"),
        (("predict", "x", "missing.png"), "no such image file"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESNETCTL_STORAGE", str(tmp_path))
    code, _, stderr = run(*args)
    assert code == 2
    assert message in stderr
