"""`resnetctl validate` and `resnetctl schema`: exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from resnetctl.spec.schema import json_schema, markdown_reference
from tests.conftest import JOBS

GOOD = """\
name: tiny
model: {name: cifar_resnet20}
data: {source: {kind: synthetic, num_classes: 4, image_size: [16, 16]},
       pipeline: {kind: cifar, crop: 16}}
train: {epochs: 1, batch_size_per_worker: 4}
"""

# The line of r50.yaml's `root: ${RESNETCTL_IMAGENET}`, wherever edits to the file move it.
R50_ROOT_LINE = next(
    number
    for number, line in enumerate((JOBS / "r50.yaml").read_text().splitlines(), start=1)
    if "${RESNETCTL_IMAGENET}" in line
)
R50_ROOT = f"{JOBS / 'r50.yaml'}:{R50_ROOT_LINE}"


def test_validate_all_jobs(cli, monkeypatch) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", "/data/imagenet")
    monkeypatch.setenv("RESNETCTL_CIFAR10", "/data/cifar10")
    files = sorted(str(p) for p in JOBS.glob("*.yaml"))
    outcome = cli("validate", *files, "--json")
    assert outcome.code == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert [r["file"] for r in report] == files and all(r["valid"] for r in report)


def test_validate_reports_each_bad_file_and_exits_2(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("epochs: 1", "epoch: 1"))
    outcome = cli("validate", str(good), str(bad), str(tmp_path / "missing.yaml"))
    assert outcome.code == 2
    assert f"ok {good}" in outcome.stdout
    assert f"{bad}:5: train.epoch: unknown key 'epoch'; did you mean 'epochs'?" in outcome.stderr
    assert f"{tmp_path / 'missing.yaml'}: no such file" in outcome.stderr


def test_validate_warns_of_unset_variables_and_exits_0(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    monkeypatch.delenv("RESNETCTL_CIFAR10", raising=False)
    files = sorted(JOBS.glob("*.yaml"))
    outcome = cli("validate", *map(str, files))
    assert outcome.code == 0, outcome.stderr
    assert all(f"ok {f}" in outcome.stdout for f in files)
    warned = [line for line in outcome.stderr.splitlines() if line.startswith("warning: ")]
    expected = [
        f
        for f in files
        if "${RESNETCTL_IMAGENET}" in f.read_text() or "${RESNETCTL_CIFAR10}" in f.read_text()
    ]
    assert len(expected) == 19  # every job but the quickstart reads its data from a variable
    assert len(warned) == len(expected) and "error" not in outcome.stderr
    assert (
        f"warning: {R50_ROOT}: data.source.root: ${{RESNETCTL_IMAGENET}} is not set"
        in outcome.stderr
    )
    assert "--set data.source.root=VALUE" in outcome.stderr
    report = json.loads(cli("validate", str(JOBS / "r18.yaml"), "--json").stdout)
    assert report[0]["valid"] and "RESNETCTL_IMAGENET" in report[0]["warnings"][0]


def test_validate_still_refuses_what_else_is_wrong_with_a_variable_unset(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    outcome = cli("validate", str(JOBS / "r50.yaml"), "--set", "train.epochs=0")
    assert outcome.code == 2
    assert "train.epochs: Input should be greater than or equal to 1" in outcome.stderr


def test_submit_refuses_an_unset_variable_unless_overridden(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    outcome = cli("submit", str(JOBS / "r50.yaml"), "--dry-run")
    assert outcome.code == 2
    assert (
        f"error: {R50_ROOT}: data.source.root: ${{RESNETCTL_IMAGENET}} is not set" in outcome.stderr
    )
    # An override of the field needs no variable: the next complaint is about /x itself.
    outcome = cli("submit", str(JOBS / "r50.yaml"), "--dry-run", "--set", "data.source.root=/x")
    assert outcome.code == 2 and "RESNETCTL_IMAGENET" not in outcome.stderr
    assert "data folder /x/train does not exist" in outcome.stderr


def test_switching_the_source_kind_drops_the_old_kinds_fields(cli, monkeypatch) -> None:
    """Issue 16: `--set data.source.kind=synthetic` used to fail on RESNETCTL_IMAGENET."""
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    monkeypatch.setattr("resnetctl.host.usable_cpus", lambda: 2)
    sets = [
        "data.source.kind=synthetic",
        "data.source.image_size=[16,16]",
        "data.source.train_per_class=4",
        "data.source.val_per_class=1",
        "resources.use_gpu=false",
        "resources.workers=1",
        "resources.cpus_per_worker=1",
        "train.global_batch_size=8",
    ]
    outcome = cli(
        "submit",
        str(JOBS / "r152.yaml"),
        "--dry-run",
        "--json",
        *(a for s in sets for a in ("--set", s)),
    )
    assert outcome.code == 0, outcome.stderr
    spec = json.loads(outcome.stdout)["spec"]
    assert spec["data"]["source"]["kind"] == "synthetic" and "root" not in spec["data"]["source"]
    assert spec["model"]["name"] == "resnet152"


def test_schema_command_prints_generated_schema(cli, tmp_path: Path) -> None:
    outcome = cli("schema")
    assert outcome.code == 0 and json.loads(outcome.stdout) == json_schema()
    target = tmp_path / "ref.md"
    assert cli("schema", "--markdown", "-o", str(target)).code == 0
    assert target.read_text() == markdown_reference()


def test_python_dash_m_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resnetctl", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("resnetctl ")


def test_unknown_command_is_usage_error(cli) -> None:
    assert cli("frobnicate").code == 2


def test_validate_accepts_the_tune_files_that_tune_accepts(cli, tmp_path: Path) -> None:
    from resnetctl.reproduce.experiments import packaged_spec
    from resnetctl.tune.plan import DEFAULT_SPEC

    tune_file = tmp_path / "lr.yaml"  # the example of `resnetctl tune --help`
    tune_file.write_text(
        GOOD + "search:\n  train.base_lr: {loguniform: [0.01, 0.3]}\n"
        "  train.optimizer.weight_decay: {choice: [0.0001, 0.0005]}\n"
    )
    default = Path(__file__).parents[2] / "platform" / "resnetctl" / "tune" / DEFAULT_SPEC
    files = [str(tune_file), str(default), str(packaged_spec("digits.yaml"))]
    outcome = cli("validate", *files)
    assert outcome.code == 0, outcome.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "search:\n  train.base_lr: {logarithmic: [0.01, 0.3]}\n")
    outcome = cli("validate", str(bad))
    assert outcome.code == 2
    assert f"{bad}:7: search.train.base_lr: unknown search kind 'logarithmic'" in outcome.stderr


def test_the_cli_prints_the_deprecation_as_a_warning_line(cli, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    quickstart = (JOBS / "quickstart.yaml").read_text()
    job.write_text(quickstart.replace("val_top1_error_pct", "val_top1_error"))
    outcome = cli("validate", str(job), str(job))
    assert outcome.code == 0
    lines = [line for line in outcome.stderr.splitlines() if "old name" in line]
    assert len(lines) == 2 and all(line.startswith(f"warning: {job}:") for line in lines)
