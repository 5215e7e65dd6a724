"""Read a job spec from YAML, apply `--set` overrides, validate, and report errors as
`file:line: dotted.field: message`."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, Tag, ValidationError

from resnetctl.spec.errors import SpecError, SpecIssue
from resnetctl.spec.job import JobSpec
from resnetctl.spec.metrics import warn_old_name
from resnetctl.spec.paths import parse_path, set_path
from resnetctl.spec.yaml_lines import UnreadableFile, YamlSyntaxError, read_document, read_text

Path_ = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class _Source:
    """The text a spec came from, with the line of every key, and where each overridden path
    was set (`--set key=value`, or the trial that set it)."""

    name: str
    lines: dict[Path_, int] = field(default_factory=dict)
    overrides: dict[Path_, str] = field(default_factory=dict)
    from_text: bool = True  # False for a spec made from another one: it has no lines

    def where(self, loc: Path_) -> str:
        """`file:line` of the deepest known prefix of loc, or the override that set it."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.overrides:
                return self.overrides[loc[:end]]
            if loc[:end] in self.lines:
                return f"{self.name}:{self.lines[loc[:end]]}"
        return f"{self.name}:1" if self.from_text else self.name


def parse_overrides(items: Sequence[str]) -> list[tuple[Path_, Any, str]]:
    """Parse `dotted.key=value` strings; values are YAML scalars or flow collections."""
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError.single(
                f"--set {item}", "expected dotted.key=value, for example train.epochs=1"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SpecError.single(f"--set {item}", f"value is not valid YAML: {exc}") from None
        parsed.append((parse_path(key), value, item))
    return parsed


def load_spec(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    warnings: list[SpecIssue] | None = None,
) -> JobSpec:
    """Load, override, interpolate `${VAR}` / `${VAR:-default}` and validate a job spec file.

    Raises `SpecError` naming file, line and field for every problem. A field that an override
    replaces never needs its variable. An unset variable is an error, unless a `warnings` list
    is given: then it is appended there, the field keeps its `${VAR}` text, and only the rest
    of the spec must be valid (what `resnetctl validate` wants of a spec bound for a cluster).
    """
    try:
        text = read_text(path)
    except UnreadableFile as exc:
        raise SpecError.single(os.fspath(path), str(exc)) from None
    return load_spec_text(text, os.fspath(path), overrides, env, warnings=warnings)


def load_spec_text(
    text: str,
    name: str = "<spec>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    warnings: list[SpecIssue] | None = None,
) -> JobSpec:
    """Like `load_spec`, from text already read; `name` is used in messages."""
    source = _Source(name)
    try:
        document = read_document(text)
    except YamlSyntaxError as exc:
        where = f"{name}:{exc.line}:{exc.column}" if exc.line else name
        raise SpecError.single(where, f"YAML syntax error: {exc.problem}") from None
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise SpecError.single(f"{name}:1", "the spec must be a mapping of sections")
    source.lines = document.lines
    twice = document.duplicates
    if twice:
        raise SpecError(
            [
                SpecIssue(
                    f"{name}:{dup.line}",
                    ".".join(map(str, dup.path)),
                    f"key {dup.path[-1]!r} is given twice, first at {name}:{dup.first_line}; "
                    "YAML would silently keep only the last: remove one",
                )
                for dup in twice
            ]
        )
    for key_path, value, item in parse_overrides(overrides):
        set_path(data, key_path, value, f"--set {item}")
        source.overrides[key_path] = f"--set {item}"
        if key_path[-1] == "kind":
            _drop_foreign_keys(data, key_path[:-1], value, source)
    unset: list[SpecIssue] = []
    data = _interpolate(data, (), source, os.environ if env is None else env, unset)
    if unset and warnings is None:
        raise SpecError(unset)
    spec = _validate(data, source, unset)
    if warnings is not None:
        warnings.extend(unset)
    _warn_old_metric_names(data, source)
    return spec


#: The fields that name a metric: the public (`_pct`) name is the one to write.
METRIC_FIELDS: tuple[Path_, ...] = (("checkpoint", "metric"), ("train", "schedule", "metric"))


def _warn_old_metric_names(data: dict[str, Any], source: _Source) -> None:
    """A deprecation warning, naming file:line or --set, for each metric field written with
    a metric's old (internal) name."""
    for path in METRIC_FIELDS:
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            warn_old_name(value, f"{source.where(path)}: {'.'.join(path)}")


def with_values(spec: JobSpec, values: Mapping[str, Any], name: str = "<spec>") -> JobSpec:
    """A copy of `spec` with `{dotted.path: value}` applied and every rule checked again (the
    cross-section ones too), without its `search` section: how a sweep makes a trial's spec.

    Raises `SpecError` naming `name` and the field, as for a file; a path that is no field of
    the spec is an unknown key with a "did you mean".
    """
    source = _Source(name, from_text=False)
    data = spec.model_dump(mode="json")  # `search` is excluded from dumps
    for path, value in values.items():
        key_path = parse_path(path)
        set_path(data, key_path, value, name)
        source.overrides[key_path] = name
        if key_path[-1] == "kind":
            _drop_foreign_keys(data, key_path[:-1], value, source)
    return _validate(data, source)


def _validate(data: dict[str, Any], source: _Source, unset: Sequence[SpecIssue] = ()) -> JobSpec:
    """`JobSpec` of `data`, or `SpecError` with one issue per problem located via `source`."""
    issues: list[SpecIssue] = []
    spec = None
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(err, source) for err in exc.errors()]
    # A field still holding `${VAR}` fails for want of the variable, which `unset` names.
    unset_fields = {issue.field for issue in unset}
    issues = [i for i in issues if not any(_under(i.field, f) for f in unset_fields)]
    if issues or spec is None:
        raise SpecError(issues or list(unset))
    spec._locator = source.where
    return spec


def checkpoint_spec(meta: Mapping[str, Any]) -> JobSpec | None:
    """The job spec a checkpoint's `meta.json` carries, or None when it has none or one of
    another resnetctl version (the run's MLflow copy is then the next best source). It says
    which metric ranked the run's checkpoints."""
    raw = meta.get("spec")
    if not isinstance(raw, dict):
        return None
    try:
        return JobSpec.model_validate(raw)
    except ValidationError:
        return None


def dump_spec(spec: JobSpec) -> str:
    """The fully resolved spec as YAML, which `load_spec` accepts back unchanged."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _under(field_path: str, prefix: str) -> bool:
    return field_path == prefix or field_path.startswith(prefix + ".")


def _drop_foreign_keys(data: dict[str, Any], section: Path_, kind: Any, source: _Source) -> None:
    """`--set data.source.kind=synthetic` switches a variant: the old variant's keys (its
    `root: ${VAR}`) would be unknown keys of the new one, so drop those the file wrote."""
    target: Any = data
    for part in section:
        target = target.get(part) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        return
    variant = next((m for m in _section_models(data, section) if _tag(m) == kind), None)
    if variant is None:
        return
    for key in list(target):
        if key not in variant.model_fields and (*section, key) not in source.overrides:
            del target[key]


def _section_models(data: dict[str, Any], section: Path_) -> list[type[BaseModel]]:
    """The models (several for a tagged union) that may hold the section at `section`."""
    annotation: Any = JobSpec
    node: Any = data
    for part in section:
        models = _models_in(annotation)
        if len(models) > 1 and isinstance(node, dict):
            models = [m for m in models if _tag(m) == node.get("kind")]
        if len(models) != 1 or not isinstance(part, str) or part not in models[0].model_fields:
            return []
        annotation = models[0].model_fields[part].annotation
        node = node.get(part) if isinstance(node, dict) else None
    return _models_in(annotation)


def _interpolate(
    value: Any, path: Path_, source: _Source, env: Mapping[str, str], unset: list[SpecIssue]
) -> Any:
    """Substitute variables; each unset one (without default) is added to `unset` and its
    `${VAR}` text left in place."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), source, env, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), source, env, unset) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in env and env[var] != "":
            return env[var]
        if default is not None:
            return default
        dotted = ".".join(map(str, path))
        unset.append(
            SpecIssue(
                source.where(path),
                dotted,
                f"${{{var}}} is not set (environment variable {var}); "
                f"export it or pass --set {dotted}=VALUE",
            )
        )
        return match.group(0)

    return _ENV.sub(substitute, value)


def _issue(err: Mapping[str, Any], source: _Source) -> SpecIssue:
    loc: Path_ = tuple(err["loc"])
    clean, fields, here = _walk(loc)
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # pydantic says "Input tag 'x' found using 'kind' does not match...": name the field
        # and the nearest valid kind, as for an unknown key.
        kinds = [k for k in (_tag(m) for m in _models_in(here)) if k is not None]
        tag = (err.get("ctx") or {}).get("tag")
        if tag is None:
            message = f"required field is missing; one of: {', '.join(kinds)}"
        else:
            message = f"unknown kind {tag!r}"
            close = difflib.get_close_matches(str(tag), kinds, n=1, cutoff=0.6)
            message += f"; did you mean {close[0]!r}?" if close else ""
            message += f" (expected one of: {', '.join(kinds)})"
        clean = [*clean, "kind"]
        return SpecIssue(source.where(tuple(clean)), ".".join(map(str, clean)), message)
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, fields or [], n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif fields:
            message += f"; expected one of: {', '.join(fields)}"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and err["type"] not in ("model_type", "union_tag_invalid"):
        inp = err["input"]
        if not isinstance(inp, dict | list):
            message += f" (got {inp!r})"
    field_path = ".".join(map(str, clean))
    # A cross-field rule fails on a whole section; point at the first field its message names.
    for named in re.findall(r"\b[a-z_]+(?:\.[a-z_0-9]+)+\b", message):
        parts = tuple(named.split("."))
        if parts in source.lines or parts in source.overrides:
            return SpecIssue(source.where(parts), named, message)
    return SpecIssue(source.where(tuple(clean)), field_path, message)


def _walk(loc: Path_) -> tuple[list[str | int], list[str] | None, Any]:
    """Drop pydantic's union-tag entries from loc; find the fields allowed where it ends and
    the annotation of what it points at."""
    model: Any = JobSpec
    clean: list[str | int] = []
    parent_fields: list[str] | None = None
    for part in loc:
        if part == "[key]":  # pydantic's mark of a mapping's key, not a field
            continue
        value_type = _mapping_value(model)
        if value_type is not None:  # a mapping such as `search`: the part is its key
            clean.append(part)
            model, parent_fields = value_type, None
            continue
        tagged_arm = _tagged_arm(model, part)
        if tagged_arm is not None:  # a union told apart by a function: its tag is no field
            model = tagged_arm
            continue
        candidates = _models_in(model)
        if isinstance(part, str) and len(candidates) > 1:
            tagged = [m for m in candidates if _tag(m) == part]
            if tagged:  # a discriminated union: pydantic puts the tag in the location
                model = tagged[0]
                continue
        clean.append(part)
        current = candidates[0] if len(candidates) == 1 else None
        parent_fields = list(current.model_fields) if current is not None else None
        if current is not None and isinstance(part, str) and part in current.model_fields:
            model = current.model_fields[part].annotation
        elif isinstance(part, int):
            model = _item_type(model)
        else:
            model = None
    return clean, parent_fields, model


def _tagged_arm(annotation: Any, part: str | int) -> Any:
    """The member of a union marked `Tag(part)` (pydantic puts the tag of a union told apart by
    a function in the location), or None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            inner, *marks = typing.get_args(arg)
            if any(isinstance(m, Tag) and m.tag == part for m in marks):
                return inner
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
        return found
    return []


def _mapping_value(annotation: Any) -> Any:
    """V of a `dict[K, V]` annotation (or of `dict[K, V] | None`), else None."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin in (typing.Union, types.UnionType):
        found = [_mapping_value(arg) for arg in typing.get_args(annotation)]
        return next((v for v in found if v is not None), None)
    return None


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else None


def _tag(model: type[BaseModel]) -> str | None:
    """The tag that selects `model` in its union: its `kind` field's default, or a class-level
    `kind` (the search domains, tagged by their single key)."""
    kind = model.model_fields.get("kind")
    if kind is not None:
        return kind.default
    return getattr(model, "kind", None) if "kind" in model.__class_vars__ else None
