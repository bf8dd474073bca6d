"""The V2 tensor rules both fronts share (service/codecs/tensors.py): the fast paths of
binary inputs and outputs against the plain rules they replace."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kiln.errors import InvalidInput
from service.codecs import tensors
from service.codecs.tensors import InputSpec, Tensor

_LENGTH = struct.Struct("<I")


def _plain_split(raw: bytes, rows: int) -> list[str]:
    """BYTES raw contents read one element at a time, as the rules say (the reference)."""
    pos, texts = 0, []
    while pos < len(raw) and len(texts) < rows:
        length = _LENGTH.unpack_from(raw, pos)[0] if len(raw) - pos >= 4 else len(raw)
        if length > len(raw) - pos - 4:
            raise InvalidInput(f"input 's': binary element {len(texts)} is truncated")
        try:
            texts.append(raw[pos + 4 : pos + 4 + length].decode())
        except UnicodeDecodeError:
            raise InvalidInput(f"input 's': element {len(texts)} is not UTF-8") from None
        pos += 4 + length
    if len(texts) != rows or pos != len(raw):
        raise InvalidInput(f"input 's': binary data is not exactly {rows} elements")
    return texts


def _outcome(read: object) -> object:
    try:
        return read()  # type: ignore[operator]
    except InvalidInput as exc:
        return f"InvalidInput: {exc.message}"


def _encoded(items: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


# elements, some not UTF-8, laid out right, then cut, padded or with a length changed
_elements = st.lists(st.binary(max_size=6) | st.text(max_size=4).map(str.encode), max_size=6)


@given(_elements, st.integers(0, 8), st.integers(-3, 3), st.binary(max_size=3))
@example([], 1, 3, b"abc")  # a length cut to 3 bytes
@example([b"ab", b"c"], 2, -1, b"")  # the last element one byte short
@example([b"ab"], 2, 2, b"\x00\x00")  # half a length after the elements
def test_bytes_split_answers_as_the_plain_rules(
    items: list[bytes], rows: int, cut: int, tail: bytes
) -> None:
    raw = _encoded(items)
    raw = raw[: len(raw) + cut] if cut < 0 else raw + tail[:cut]
    tensor = Tensor("s", [rows], "BYTES", None, raw=raw)
    ours = _outcome(lambda: tensors._split(tensor, raw, rows))
    assert ours == _outcome(lambda: _plain_split(raw, rows))
    view = _outcome(lambda: tensors._split(tensor, memoryview(raw), rows))  # REST's slices
    assert view == ours


def test_a_bad_element_before_a_cut_one_is_named_first() -> None:
    raw = _encoded([b"\xff", b"ok"])[:-1]  # element 0 not UTF-8, element 1 cut short
    tensor = Tensor("s", [2], "BYTES", None, raw=raw)
    with pytest.raises(InvalidInput, match="element 0 is not UTF-8"):
        tensors._split(tensor, raw, 2)


@given(
    st.lists(st.sampled_from(["FP32", "BYTES", "FP64", "INT64"]), min_size=1, max_size=6),
    st.integers(1, 4),
)
def test_fp32_inputs_read_in_one_block_keep_their_values_and_order(
    kinds: list[str], rows: int
) -> None:
    rng = np.random.default_rng(len(kinds) * 10 + rows)
    sent, specs, expected = [], [], {}
    for index, kind in enumerate(kinds):
        name = f"f{index}"
        if kind == "BYTES":
            words = [f"w{index}-{r}" for r in range(rows)]
            raw = _encoded([w.encode() for w in words])
            expected[name] = words
            specs.append(InputSpec(name, "BYTES"))
        else:
            values = rng.normal(size=rows).astype(tensors._NUMERIC[kind])
            raw = values.tobytes()
            expected[name] = values.astype(np.float32).tolist()
            specs.append(InputSpec(name, "FP32"))
        sent.append(Tensor(name, [rows, 1], kind, None, raw=raw))
    sent.reverse()  # the order sent does not matter; the columns follow the model's
    decoded = tensors.assemble(
        sent, specs, request_id=None, outputs=None, parameters={}, max_rows=10
    )
    assert list(decoded.columns) == [spec.name for spec in specs]
    for spec in specs:
        column = decoded.columns[spec.name]
        assert column.tolist() == expected[spec.name]
        assert column.dtype == (object if spec.datatype == "BYTES" else np.float32)
        if spec.datatype == "FP32":
            column[0] = 1.0  # writable, as a column read on its own is


def test_an_fp32_input_of_the_wrong_size_is_refused_by_the_plain_rule() -> None:
    sent = [
        Tensor("a", [2], "FP32", None, raw=np.ones(2, np.float32).tobytes()),
        Tensor("b", [2], "FP32", None, raw=b"\x00" * 7),
    ]
    specs = [InputSpec("a", "FP32"), InputSpec("b", "FP32")]
    with pytest.raises(InvalidInput, match="input 'b': 7 bytes of FP32, needs 8"):
        tensors.assemble(sent, specs, request_id=None, outputs=None, parameters={}, max_rows=10)


@given(st.lists(st.sampled_from(["yes", "no", "", "ünï", "a" * 300]), max_size=40))
def test_string_outputs_encode_as_each_alone(labels: list[str]) -> None:
    array = np.array(labels, dtype=object).reshape(-1, 1) if labels else np.array([], object)
    assert tensors.binary_bytes(array, "BYTES") == _encoded([s.encode() for s in labels])


def test_mixed_outputs_keep_their_own_forms() -> None:
    # 1, 1.0 and True are equal as keys: each must still say itself
    items = [1, 1.0, True, b"raw", "text"] * 3
    array = np.array(items, dtype=object)
    expected = _encoded([v if isinstance(v, bytes) else str(v).encode() for v in items])
    assert tensors.binary_bytes(array, "BYTES") == expected
