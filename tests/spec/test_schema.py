"""The committed schema and field reference are generated from the models, never stale."""

from __future__ import annotations

import json

import pytest

from resnetctl.spec import JobSpec
from resnetctl.spec.schema import json_schema, json_schema_text, markdown_reference
from tests.conftest import ROOT

REGENERATE = (
    "regenerate with: resnetctl schema -o docs/job-spec.schema.json; "
    "resnetctl schema --markdown -o docs/job-spec.md"
)


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "docs" / "job-spec.schema.json").read_text()
    assert committed == json_schema_text(), REGENERATE


def test_committed_reference_is_current() -> None:
    committed = (ROOT / "docs" / "job-spec.md").read_text()
    assert committed == markdown_reference(), REGENERATE


def test_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json_schema()
    objects = [schema, *schema["$defs"].values()]
    assert all(obj.get("additionalProperties") is False for obj in objects if "properties" in obj)


def test_reference_documents_every_field() -> None:
    reference = markdown_reference()
    from resnetctl.spec.schema import _models_in, child_prefix

    def walk(model: type, prefix: str) -> None:
        for name, info in model.model_fields.items():
            assert f"`{prefix}{name}`" in reference, prefix + name
            for child in _models_in(info.annotation):
                walk(child, child_prefix(prefix, name, info.annotation))

    walk(JobSpec, "")


@pytest.mark.parametrize("path", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_jobs_point_editors_at_the_schema(path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/job-spec.schema.json"
    assert json.loads((ROOT / "docs" / "job-spec.schema.json").read_text())["title"] == "JobSpec"
