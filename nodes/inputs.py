"""Numeric inputs checked where a node runs: values that arrive through links skip the widgets' min/max, so every
node's INT and FLOAT inputs are checked against the limits its schema declares before it runs (one rule, one
message, for every node: ``check_numbers_first`` is applied to all of the pack's nodes where they are listed)."""
from __future__ import annotations

import functools
import math
from functools import cache

from comfy_api.latest import io


@cache
def _schema_limits(node: type[io.ComfyNode]) -> tuple[str, dict[str, tuple[float, float]]]:
    """The node's display name and ``{input: (min, max)}`` of its INT and FLOAT inputs."""
    schema = node.define_schema()
    limits = {}
    for spec in schema.inputs:
        if isinstance(spec, (io.Int.Input, io.Float.Input)):
            low = spec.min if spec.min is not None else -math.inf
            high = spec.max if spec.max is not None else math.inf
            limits[spec.id] = (low, high)
    return schema.display_name or schema.node_id, limits


def check_numbers(node: type[io.ComfyNode], **values: float) -> None:
    """Raise a ValueError naming the input, its value and the allowed range unless every value lies within the
    limits the node's schema gives that input."""
    title, limits = _schema_limits(node)
    for name, value in values.items():
        low, high = limits[name]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            raise ValueError(f"AniPortrait: input '{name}' of {title} is {value!r}, outside the allowed range "
                             f"{low:g} to {high:g}. Set it within that range (a value that comes through a link "
                             "skips the widget's limits, so check the node that sends it).")


def check_numbers_first(node: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """Make ``node.execute`` check every INT/FLOAT input it receives (``check_numbers``) before it runs."""
    execute = node.__dict__["execute"].__func__
    if getattr(execute, "checks_numbers", False):
        return node

    @functools.wraps(execute)
    def checked(cls, **inputs):
        _, limits = _schema_limits(cls)
        check_numbers(cls, **{name: value for name, value in inputs.items() if name in limits})
        return execute(cls, **inputs)

    checked.checks_numbers = True
    node.execute = classmethod(checked)
    return node
