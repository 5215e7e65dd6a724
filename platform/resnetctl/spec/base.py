"""The strict base model every job-spec section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, assignments are re-validated.

    Mistyped keys must never be dropped silently: a `lerning_rate` that is ignored trains a
    different model from the one its author meant.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        use_attribute_docstrings=False,
        frozen=False,
    )
