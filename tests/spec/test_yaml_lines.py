"""`read_document`: the one YAML reader of job specs and cluster configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resnetctl.cluster.config import ClusterConfigError
from resnetctl.cluster.parse import read_yaml
from resnetctl.spec import SpecError
from resnetctl.spec.loader import load_spec_text
from resnetctl.spec.yaml_lines import YamlSyntaxError, read_document

TEXT = """\
base: &b {x: 1}
top:
  <<: *b
  items:
    - one
    - {two: 2}
  top: again
"""


def test_data_is_what_safe_load_gives_with_every_keys_line() -> None:
    document = read_document(TEXT)
    assert document.data == yaml.safe_load(TEXT)
    assert document.lines[("top", "items")] == 4
    assert document.lines[("top", "items", 1)] == 6
    assert document.lines[("top", "items", 1, "two")] == 6
    assert document.lines[("top", "top")] == 7
    assert ("top", "<<") not in document.lines  # a merge is not a key of its own
    assert document.duplicates == []


def test_keys_given_twice_are_found_with_both_lines() -> None:
    (twice,) = read_document("a: 1\nb:\n  c: 2\n  c: 3\n").duplicates
    assert (twice.path, twice.first_line, twice.line) == (("b", "c"), 3, 4)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1, 2\nb: 3\n", 2),  # unclosed flow sequence, found on the next line
        ("a: !!python/object:os.system {}\n", 1),  # the safe loader refuses the tag
        ("a: 1\n---\nb: 2\n", 2),  # two documents where one is expected
    ],
)
def test_text_that_is_not_one_safe_document_names_its_line(text: str, line: int) -> None:
    with pytest.raises(YamlSyntaxError) as exc:
        read_document(text)
    assert exc.value.line == line and exc.value.problem


def test_specs_and_cluster_configs_report_a_syntax_error_at_the_same_line(tmp_path: Path) -> None:
    text = "name: x\nresources:\n  workers: [2\n"
    with pytest.raises(YamlSyntaxError) as syntax:
        read_document(text)
    with pytest.raises(SpecError) as spec:
        load_spec_text(text, "job.yaml")
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ClusterConfigError) as cluster:
        read_yaml(path)
    line = syntax.value.line
    assert str(spec.value).startswith(f"job.yaml:{line}:{syntax.value.column}: ")
    assert cluster.value.issues[0].line == line
