"""schemathesis hooks: the rules a JSON Schema cannot state, told to the fuzzer.

JSON Schema has no way to say "`to` is after `from`", "a slot ends after it starts", "a body
is at most 64 KiB", "confirming a hold books the hold's quantity" or "an Idempotency-Key is
never reused with another body". The server refuses those (422, 413), and a fuzzer that does
not know them counts the refusal as a schema-valid request rejected. So valid (positive) cases
that break one of the first three are left out, a confirmation leaves the quantity to the hold,
and each generated Idempotency-Key is made specific to its body (the same key and body still
replay). Nothing here touches the checks. Loaded by tests/http/test_fuzz.py through
SCHEMATHESIS_HOOKS.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import schemathesis

from realtime.http.responses import MAX_BODY
from realtime.schema.types import IDEMPOTENCY_KEY_PATTERN, parse_time, python_pattern

_KEY = re.compile(python_pattern(IDEMPOTENCY_KEY_PATTERN))


def _time(value: Any) -> Any:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _breaks_a_rule(case: Any) -> bool:
    if len(json.dumps(case.body, default=str).encode()) > MAX_BODY:
        return True
    query = case.query if isinstance(case.query, dict) else {}
    start, end = _time(query.get("from")), _time(query.get("to"))
    if start is not None and end is not None and end <= start:
        return True
    body = case.body if isinstance(case.body, dict) else {}
    for slot in body.get("slots") or []:
        if isinstance(slot, dict):
            start, end = _time(slot.get("starts_at")), _time(slot.get("ends_at"))
            if start is not None and end is not None and end <= start:
                return True
    return False


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    return not (_positive(case) and _breaks_a_rule(case))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    # Here rather than in map_case: the stateful phase merges its links' values into a case
    # after the case hooks ran; edits made here are seen by the checks (schemathesis
    # revalidates the case).
    body = case.body
    if (_positive(case) and case.operation.label == "POST /api/bookings"
            and isinstance(body, dict) and "hold_id" in body):
        body.pop("quantity", None)
    headers = case.headers  # a case-insensitive mapping, or None
    key = headers.get("Idempotency-Key") if headers is not None else None
    if isinstance(key, str) and _KEY.match(key):
        digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, default=str).encode())
        headers["Idempotency-Key"] = key[:246] + "-" + digest.hexdigest()[:8]
