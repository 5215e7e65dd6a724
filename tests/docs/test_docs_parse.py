"""Every shell block of README.md and docs/*.md is well-formed, whether the docs test runs it or
not: valid shell, each `resnetctl` command one the CLI accepts, each job spec and cluster
config it names present and valid, and a marker, where there is one, that says why it is not
run (tests/docs/_blocks.py lists them)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from resnetctl.cluster import check_config
from resnetctl.spec import load_spec
from tests.conftest import ROOT
from tests.docs._blocks import (
    NEEDS,
    PAGES,
    Block,
    blocks,
    named_files,
    parse_cli,
    resnetctl_words,
    unlabelled_commands,
)

ALL = [block for page in PAGES for block in blocks(page)]
SHELL_BLOCKS = [block for block in ALL if block.is_shell]


def test_the_docs_have_shell_blocks_to_check() -> None:
    assert len(SHELL_BLOCKS) >= 20
    assert {b.page.name for b in SHELL_BLOCKS} >= {"README.md", "after-training.md", "cluster.md"}


@pytest.mark.parametrize("block", ALL, ids=[b.where for b in ALL])
def test_markers_are_known_and_commands_are_labelled(block: Block) -> None:
    assert not unlabelled_commands(block), f"{block.where}: label the block ```bash"
    if block.marker is None:
        return
    assert block.is_shell, f"{block.where}: a marker before a {block.lang or 'plain'} block"
    if block.needs is not None:
        assert block.needs in NEEDS, f"{block.where}: unknown need {block.needs!r}"
    if block.tested_by is not None:
        test = ROOT / block.tested_by
        assert test.is_file(), f"{block.where}: no test {block.tested_by}"
        # The test (or a helper module beside it) reads the page it stands in for.
        texts = [test.read_text(), *(h.read_text() for h in test.parent.glob("_*.py"))]
        assert any(block.page.name in text for text in texts), f"{block.where}: {test}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.where for b in SHELL_BLOCKS])
def test_every_shell_block_parses(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    syntax = subprocess.run(["bash", "-n"], input=block.script(), capture_output=True, text=True)
    assert syntax.returncode == 0, f"{block.where}: {syntax.stderr}"
    for words in block.commands():
        arguments = resnetctl_words(words)
        if arguments is not None:
            problem = parse_cli(arguments)
            assert problem is None, f"{block.where}: resnetctl {' '.join(arguments)}: {problem}"
    monkeypatch.setenv("RESNETCTL_IMAGENET", "/data/imagenet")  # the paper's jobs name these
    monkeypatch.setenv("RESNETCTL_CIFAR10", "/data/cifar10")
    for path in named_files(block):
        assert path.is_file(), f"{block.where}: no file {path.relative_to(ROOT)}"
        if path.parent.name == "jobs":
            load_spec(path, warnings=[])
        else:
            report = check_config(path)
            assert not report.errors, f"{block.where}: {report.errors}"
