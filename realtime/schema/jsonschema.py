"""JSON Schema as the documents publish it: the schema hook for our custom types, and the
portable form (one `Time` component, ECMA-262 patterns) both /openapi.json and /asyncapi.json
use."""

from __future__ import annotations

from typing import Any

from realtime.schema.types import TIME_SCHEMA, Time, ecma_pattern

REF = "#/components/schemas/{name}"


def schema_hook(type_: type) -> dict[str, Any]:
    if type_ is Time:
        return dict(TIME_SCHEMA)
    raise NotImplementedError(type_)


def portable(node: Any) -> Any:
    """`node` as JSON Schema readers want it: every inline `Time` schema replaced by a $ref to
    the one `Time` component (TIME_COMPONENT; its pattern is long), and patterns written for
    Python's `re` (`\\Z`) back in ECMA-262's dialect (`$`)."""
    if isinstance(node, dict):
        if node.get("pattern") == TIME_SCHEMA["pattern"]:
            extra = {k: v for k, v in node.items() if k not in TIME_SCHEMA}
            return {"$ref": REF.format(name="Time"), **extra}
        return {k: ecma_pattern(v) if k == "pattern" and isinstance(v, str) else portable(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [portable(v) for v in node]
    return node


TIME_COMPONENT = {"Time": TIME_SCHEMA}
