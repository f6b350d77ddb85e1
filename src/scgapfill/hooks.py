"""Project hooks."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from .params import validate_all


class ParameterValidationHook:
    """Validate every parameter section as soon as the context exists, before any node runs.

    A wrong value (``--params="qc.min_genes=-1"``) stops the run at once with the
    dotted key named, instead of failing half-way through a pipeline.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        validate_all(context.params)
