"""hypothesis strategies for hostile input: arbitrary JSON (huge numbers, deep nesting, odd
text), message-shaped objects whose fields hold anything, and bytes that are not UTF-8."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

# Numbers no field accepts: past int64, past a double, with thousands of digits.
HUGE_INTS = st.one_of(st.integers(), st.integers(min_value=2**63 - 2, max_value=2**63 + 2),
                      st.integers(min_value=-(10**40), max_value=10**40))
SCALARS = st.one_of(st.none(), st.booleans(), HUGE_INTS,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)

# Raw JSON text no encoder would write: numbers of thousands of digits or past a double's
# range, nesting thousands deep, lone surrogates.
RAW_NUMBERS = st.one_of(st.integers(4000, 6000).map(lambda n: "9" * n),
                        st.sampled_from(["1e400", "-1e400", "1e-400", "123456789" * 10 + ".5e99999"]))
DEEP = st.integers(500, 20000).flatmap(lambda n: st.sampled_from(
    ["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n]))
ODD_TEXT = st.sampled_from(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"' + "x" * 5000 + '"'])
RAW_VALUES = st.one_of(RAW_NUMBERS, DEEP, ODD_TEXT)


def _text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def shaped(fields: list[str], tag: tuple[str, list[str]] | None = None) -> st.SearchStrategy[bytes]:
    """Objects with the message's own field names (so the decoder reads past the first one),
    each holding arbitrary JSON or raw hostile JSON text; `tag`: (tag field, its values)."""
    names = st.sampled_from(fields) | st.text(max_size=8)
    values = st.one_of(JSON.map(_text), RAW_VALUES)  # JSON text either way

    def render(pairs: list[tuple[str, str]], tag_value: str | None) -> bytes:
        items = [f"{_text(name)}:{text}" for name, text in pairs]
        if tag is not None and tag_value is not None:
            items.insert(0, f"{_text(tag[0])}:{_text(tag_value)}")
        return ("{" + ",".join(items) + "}").encode()

    tags = st.none() if tag is None else st.sampled_from(tag[1]) | st.text(max_size=8)
    return st.builds(render, st.lists(st.tuples(names, values), max_size=6), tags)


def not_utf8() -> st.SearchStrategy[bytes]:
    """JSON-looking bytes with invalid UTF-8 inside a string or around it."""
    bad = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    return st.builds(lambda a, b, c: b'{"' + a + b'":"' + b + b'"}' + c, st.binary(max_size=4) | bad,
                     bad, st.binary(max_size=3))


def bodies(fields: list[str], tag: tuple[str, list[str]] | None = None
           ) -> st.SearchStrategy[bytes]:
    """Everything above, as the bytes of a request body or a frame."""
    return st.one_of(
        JSON.map(msgspec.json.encode),
        shaped(fields, tag),
        RAW_VALUES.map(str.encode),
        not_utf8(),
        st.binary(max_size=64),
    )
