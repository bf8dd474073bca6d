"""The V2 (Open Inference Protocol) codec against tritonclient, by property, and by error rule."""

from __future__ import annotations

import ast
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.artifact import FeatureKind
from kiln.errors import InvalidInput, PayloadTooLarge
from service.codecs.v2 import (
    DATATYPES,
    FEATURE_DATATYPES,
    InputSpec,
    RequestedOutput,
    V2Request,
    decode_request,
    encode_response,
)
from tests.conftest import REPO

Client = triton.InferenceServerClient
SPECS = [
    InputSpec("size", "FP32"),
    InputSpec("price", "FP32"),
    InputSpec("count", "FP32"),
    InputSpec("city", "BYTES"),
]
CITIES = np.array(["Zürich", "", "東京", "new york"], dtype=object)


def triton_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def triton_inputs(binary: bool) -> list[triton.InferInput]:
    return [
        triton_input("size", np.array([[1.5], [2], [-3], [4e-3]], np.float32), "FP32", binary),
        triton_input("price", np.array([0.1, 1e10, -2, 0], np.float64), "FP64", binary),
        triton_input("count", np.array([1, -7, 2**40, 0], np.int64), "INT64", binary),
        triton_input("city", CITIES, "BYTES", binary),
    ]


def decode(body: bytes, header_length: int | None, **kwargs: Any) -> V2Request:
    kwargs.setdefault("max_rows", 1000)
    return decode_request(body, kwargs.pop("specs", SPECS), header_length=header_length, **kwargs)


def body_of(doc: dict[str, Any], binary: bytes = b"") -> tuple[bytes, int | None]:
    header = orjson.dumps(doc)
    return header + binary, (len(header) if binary else None)


def bytes_tensor(*texts: str | bytes) -> bytes:
    encoded = [t.encode() if isinstance(t, str) else t for t in texts]
    return b"".join(struct.pack("<I", len(e)) + e for e in encoded)


# ---- requests that tritonclient builds --------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_request_decodes_to_columns(binary: bool) -> None:
    body, header_length = Client.generate_request_body(triton_inputs(binary), request_id="r-1")
    assert (header_length is not None) == binary

    request = decode(body, header_length)

    assert request.id == "r-1"
    assert request.rows == 4
    assert list(request.columns) == ["size", "price", "count", "city"]
    np.testing.assert_array_equal(request.columns["size"], np.float32([1.5, 2, -3, 4e-3]))
    np.testing.assert_array_equal(request.columns["price"], np.float32([0.1, 1e10, -2, 0]))
    np.testing.assert_array_equal(request.columns["count"], np.float32([1, -7, 2**40, 0]))
    for name in ("size", "price", "count"):
        assert request.columns[name].dtype == np.float32
    assert request.columns["city"].dtype == object
    assert request.columns["city"].tolist() == ["Zürich", "", "東京", "new york"]


def test_no_outputs_asks_for_all_outputs_as_binary() -> None:
    body, header_length = Client.generate_request_body(triton_inputs(True))

    request = decode(body, header_length)

    assert request.id is None
    assert request.outputs is None
    assert request.parameters["binary_data_output"] is True


def test_requested_outputs_keep_their_binary_flag_and_order() -> None:
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("label", binary_data=True),
    ]
    body, header_length = Client.generate_request_body(triton_inputs(False), outputs=outputs)

    request = decode(body, header_length)

    assert request.outputs == [
        RequestedOutput("probabilities", binary=False),
        RequestedOutput("label", binary=True),
    ]


@pytest.mark.parametrize("default", [True, False])
def test_output_without_binary_data_follows_binary_data_output(default: bool) -> None:
    doc = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "parameters": {"binary_data_output": default},
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": not default}}],
    }
    request = decode(*body_of(doc), specs=[InputSpec("x", "FP32")])
    assert request.outputs == [RequestedOutput("a", default), RequestedOutput("b", not default)]


def test_nested_json_data_and_ignored_unknown_inputs() -> None:
    doc = {
        "inputs": [
            {
                "name": "extra",
                "shape": [2],
                "datatype": "INT32",
                "parameters": {"binary_data_size": 8},
            },
            {"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[1], [2.5]]},
            {
                "name": "s",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": 10},
            },
        ],
    }
    specs = [InputSpec("x", "FP32"), InputSpec("s", "BYTES")]
    body, header_length = body_of(doc, b"\x01" * 8 + bytes_tensor("ab", ""))

    request = decode(body, header_length, specs=specs, unknown_inputs="ignore")

    assert list(request.columns) == ["x", "s"]
    assert request.columns["x"].tolist() == [1.0, 2.5]
    assert request.columns["s"].tolist() == ["ab", ""]
    with pytest.raises(InvalidInput, match="unknown input 'extra'"):
        decode(body, header_length, specs=specs)


def test_binary_nan_and_infinity_pass_through() -> None:
    values = np.array([np.nan, np.inf, -np.inf], np.float32)
    body, header_length = Client.generate_request_body([triton_input("x", values, "FP32", True)])
    column = decode(body, header_length, specs=[InputSpec("x", "FP32")]).columns["x"]
    np.testing.assert_array_equal(column, values)


# ---- responses that tritonclient parses -------------------------------------------------------

OUTPUTS = [
    ("probabilities", np.array([[0.25, 0.75], [1, 0], [0.5, 0.5]], np.float32)),
    ("label", np.array([1, 0, -(2**40)], np.int64)),
    ("name", np.array(["yes", "", "ñö 東"], dtype=object)),
]


def parse(body: bytes, header_length: int | None) -> Any:
    return Client.parse_response_body(body, header_length=header_length)


def assert_outputs(result: Any, names: list[str]) -> None:
    expected = dict(OUTPUTS)
    assert [o["name"] for o in result.get_response()["outputs"]] == names
    for name in names:
        got = result.as_numpy(name)
        if name == "name":  # binary BYTES come back as bytes, JSON BYTES as str
            got = [v.decode() if isinstance(v, bytes) else v for v in got.tolist()]
            assert got == expected[name].tolist()
        else:
            assert got.dtype == expected[name].dtype
            np.testing.assert_array_equal(got, expected[name])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_all_outputs_parse_with_tritonclient(binary: bool) -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version="3",
        request_id="r-9",
        outputs=OUTPUTS,
        requested=None,
        binary_default=binary,
    )
    assert (header_length is not None) == binary
    result = parse(body, header_length)
    assert_outputs(result, ["probabilities", "label", "name"])
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "3", "r-9")
    assert response["outputs"][0]["shape"] == [3, 2]
    assert response["outputs"][0]["datatype"] == "FP32"
    assert response["outputs"][1]["datatype"] == "INT64"
    assert response["outputs"][2]["datatype"] == "BYTES"


def test_requested_outputs_mix_binary_and_json_in_requested_order() -> None:
    requested = [RequestedOutput("name", True), RequestedOutput("probabilities", False)]
    body, header_length = encode_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=OUTPUTS,
        requested=requested,
        binary_default=False,
    )
    assert header_length is not None
    result = parse(body, header_length)
    assert "id" not in result.get_response()
    assert_outputs(result, ["name", "probabilities"])
    assert "data" in result.get_output("probabilities")
    assert "binary_data_size" in result.get_output("name")["parameters"]


def test_json_response_has_no_header_length_and_nan_becomes_null() -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=[("p", np.array([np.nan, 1.0])), ("ok", np.array([True, False]))],
        requested=None,
        binary_default=False,
    )
    assert header_length is None
    assert orjson.loads(body)["outputs"][0] == {
        "name": "p",
        "datatype": "FP64",
        "shape": [2],
        "data": [None, 1.0],
    }
    result = parse(body, None)
    assert np.isnan(result.as_numpy("p")[0])
    assert result.as_numpy("ok").tolist() == [True, False]


def test_encode_rejects_unknown_requested_output_and_unsupported_dtype() -> None:
    common: dict[str, Any] = {"model_name": "m", "model_version": "1", "request_id": None}
    with pytest.raises(InvalidInput, match="unknown output 'nope'"):
        encode_response(
            **common,
            outputs=OUTPUTS,
            requested=[RequestedOutput("nope", True)],
            binary_default=False,
        )
    with pytest.raises(TypeError, match="complex"):
        encode_response(
            **common, outputs=[("c", np.array([1j]))], requested=None, binary_default=True
        )


# ---- properties -------------------------------------------------------------------------------

FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, int | None, list[InputSpec], dict[str, list[Any]]]:
    """A request built by hand: random FP32/BYTES columns, each JSON (flat or nested) or binary,
    plus perhaps an unknown input somewhere in between."""
    rows = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(["FP32", "BYTES"]), min_size=1, max_size=4))
    specs = [InputSpec(f"f{i}", kind) for i, kind in enumerate(kinds)]  # type: ignore[arg-type]
    expected: dict[str, list[Any]] = {}
    entries: list[tuple[dict[str, Any], bytes]] = []
    for spec in specs:
        values = draw(
            st.lists(FLOATS if spec.datatype == "FP32" else st.text(), min_size=rows, max_size=rows)
        )
        expected[spec.name] = values
        column = draw(st.booleans())
        entry: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype}
        entry["shape"] = [rows, 1] if column else [rows]
        if draw(st.booleans()):
            raw = (
                np.array(values, "<f4").tobytes()
                if spec.datatype == "FP32"
                else bytes_tensor(*values)
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            entries.append((entry, raw))
        else:
            entry["data"] = [[v] for v in values] if column and draw(st.booleans()) else values
            entries.append((entry, b""))
    if draw(st.booleans()):
        extra = draw(st.binary(max_size=16))
        entry = {
            "name": "unknown",
            "shape": [len(extra)],
            "datatype": "UINT8",
            "parameters": {"binary_data_size": len(extra)},
        }
        entries.insert(draw(st.integers(0, len(entries))), (entry, extra))
    binary = b"".join(raw for _, raw in entries)
    header = orjson.dumps({"inputs": [entry for entry, _ in entries]})
    use_header = bool(binary) or draw(st.booleans())
    return header + binary, (len(header) if use_header else None), specs, expected


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_property_hand_built_requests_round_trip(
    case: tuple[bytes, int | None, list[InputSpec], dict[str, list[Any]]],
) -> None:
    body, header_length, specs, expected = case
    request = decode(body, header_length, specs=specs, unknown_inputs="ignore")
    assert list(request.columns) == [spec.name for spec in specs]
    for spec in specs:
        column = request.columns[spec.name]
        if spec.datatype == "FP32":
            assert column.dtype == np.float32
            np.testing.assert_array_equal(column, np.array(expected[spec.name], np.float32))
        else:
            assert column.tolist() == expected[spec.name]


def decode_or_reject(body: bytes, header_length: int | None) -> None:
    """Decoding either succeeds or raises InvalidInput (PayloadTooLarge is one); nothing else."""
    try:
        decode(body, header_length, max_rows=50, unknown_inputs="ignore")
    except InvalidInput as error:
        assert 0 < len(str(error)) < 300


@given(st.binary(max_size=200), st.none() | st.integers(-5, 250))
def test_fuzz_arbitrary_bytes(body: bytes, header_length: int | None) -> None:
    decode_or_reject(body, header_length)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
NAMES = st.sampled_from(["size", "price", "count", "city", "other"]) | JSONISH
TENSORS = st.fixed_dictionaries(
    {},
    optional={
        "name": NAMES,
        "shape": st.lists(st.integers(-1, 60), max_size=3) | JSONISH,
        "datatype": st.sampled_from(["FP32", "INT64", "UINT8", "FP16", "BYTES", "BOOL", "X"])
        | JSONISH,
        "data": st.lists(JSONISH, max_size=6) | JSONISH,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 40)})
        | JSONISH,
    },
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        JSONISH,
        st.fixed_dictionaries(
            {"inputs": st.lists(TENSORS, max_size=5) | JSONISH},
            optional={"id": JSONISH, "parameters": JSONISH, "outputs": JSONISH},
        ),
    ),
    st.binary(max_size=40),
    st.booleans(),
)
def test_fuzz_json_like_documents(doc: Any, binary: bytes, with_header: bool) -> None:
    header = orjson.dumps(doc)
    decode_or_reject(header + binary, len(header) if with_header else None)


@given(
    st.integers(0, 3),
    st.sampled_from(["name", "shape", "datatype", "data", "parameters", "extra"]),
    JSONISH,
)
def test_fuzz_one_field_of_a_valid_json_request(index: int, field: str, value: Any) -> None:
    body, _ = Client.generate_request_body(triton_inputs(False))
    doc = orjson.loads(body)
    doc["inputs"][index][field] = value
    decode_or_reject(orjson.dumps(doc), None)


def valid_binary_request() -> tuple[bytes, int]:
    body, header_length = Client.generate_request_body(triton_inputs(True))
    assert header_length is not None
    return body, header_length


@given(
    st.sampled_from(["cut", "append", "header", "flip"]),
    st.integers(0, 10**6),
    st.binary(min_size=1, max_size=12),
)
def test_fuzz_broken_binary_bodies(how: str, where: int, junk: bytes) -> None:
    body, header_length = valid_binary_request()
    if how == "cut":
        body = body[: where % len(body)]
    elif how == "append":
        body += junk
    elif how == "header":
        header_length += where % 41 - 20
    else:
        at = where % len(body)
        body = body[:at] + bytes([body[at] ^ junk[0]]) + body[at + 1 :]
    decode_or_reject(body, header_length)


@pytest.mark.parametrize(("depth", "phrase"), [(1020, "nested too deeply"), (5000, "depth")])
def test_deeply_nested_data_is_an_error_not_a_crash(depth: int, phrase: str) -> None:
    data = b"[" * depth + b"1.0" + b"]" * depth
    body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": ' + data + b"}]}"
    with pytest.raises(InvalidInput, match=phrase):
        decode(body, None, specs=[InputSpec("x", "FP32")])


# ---- one case per error rule ------------------------------------------------------------------

X: dict[str, Any] = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
S: dict[str, Any] = {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
XS = [InputSpec("x", "FP32"), InputSpec("s", "BYTES")]


def binary_input(base: dict[str, Any], size: int, **changes: Any) -> dict[str, Any]:
    entry = {k: v for k, v in base.items() if k != "data"} | changes
    return entry | {"parameters": {"binary_data_size": size}}


def case(
    id: str,
    phrase: str,
    inputs: Any = None,
    binary: bytes = b"",
    *,
    top: dict[str, Any] | None = None,
    body: bytes | None = None,
    header_length: int | None = None,
    error: type[Exception] = InvalidInput,
) -> Any:
    if body is None:
        doc = {"inputs": [X, S] if inputs is None else inputs} | (top or {})
        body, header_length = body_of(doc, binary)
    return pytest.param(body, header_length, error, phrase, id=id)


ERRORS = [
    case("header-negative", "outside the body", body=b"{}", header_length=-1),
    case("header-past-end", "outside the body", body=b"{}", header_length=3),
    case("not-json", "not valid JSON", body=b"{nope"),
    case("binary-without-header", "needs the header length", body=b'{"inputs":[]}\x00'),
    case("not-an-object", "must be a JSON object", body=b"[1]"),
    case("id-not-string", "'id' must be a string", top={"id": 7}),
    case("parameters-not-object", "'parameters' must be a JSON object", top={"parameters": []}),
    case(
        "binary-data-output",
        "'binary_data_output' must be a boolean",
        top={"parameters": {"binary_data_output": 1}},
    ),
    case("outputs-not-list", "'outputs' must be a list", top={"outputs": {"name": "a"}}),
    case("output-no-name", "outputs[0] must be", top={"outputs": [{"parameters": {}}]}),
    case(
        "output-binary-data",
        "'binary_data' must be a boolean",
        top={"outputs": [{"name": "a", "parameters": {"binary_data": "yes"}}]},
    ),
    case("output-twice", "requested twice", top={"outputs": [{"name": "a"}, {"name": "a"}]}),
    case(
        "output-classification",
        "'classification' is not supported",
        top={"outputs": [{"name": "a", "parameters": {"classification": 2}}]},
    ),
    case("inputs-missing", "'inputs' must be a non-empty list", body=b"{}"),
    case("inputs-empty", "'inputs' must be a non-empty list", []),
    case("input-not-object", "inputs[1] must be a JSON object", [X, "s"]),
    case("input-no-name", "inputs[0] needs a string 'name'", [{**X, "name": 3}, S]),
    case("shape-not-list", "'shape' must be a list", [{**X, "shape": 2}, S]),
    case("shape-negative", "non-negative integers", [{**X, "shape": [-2]}, S]),
    case("shape-bool", "non-negative integers", [{**X, "shape": [True]}, S]),
    case("datatype-missing", "'datatype' must be a string", [X, {**S, "datatype": None}]),
    case("datatype-unknown", "unknown datatype 'FP33'", [{**X, "datatype": "FP33"}, S]),
    case("input-parameters", "'parameters' must be a JSON object", [{**X, "parameters": 1}, S]),
    case(
        "shared-memory",
        "'shared_memory_region' is not supported",
        [{**X, "parameters": {"shared_memory_region": "r"}}, S],
    ),
    case(
        "binary-size-negative",
        "'binary_data_size' must be a non-negative integer",
        [binary_input(X, -1), S],
    ),
    case(
        "binary-size-float",
        "'binary_data_size' must be a non-negative integer",
        [binary_input(X, 8) | {"parameters": {"binary_data_size": 8.0}}, S],
        b"\0" * 8,
    ),
    case(
        "data-and-binary",
        "both 'data' and 'binary_data_size'",
        [binary_input(X, 8) | {"data": [1, 2]}, S],
        b"\0" * 8,
    ),
    case("no-data", "neither 'data' nor", [{k: v for k, v in X.items() if k != "data"}, S]),
    case("duplicate-input", "input 'x' is given more than once", [X, S, X]),
    case("missing-input", "missing input 's'", [X]),
    case("unknown-input", "unknown input 'y'", [X, S, {**X, "name": "y"}]),
    case(
        "binary-truncated",
        "binary data for input 'x' is truncated: needs 8 bytes, 5 left",
        [binary_input(X, 8), S],
        b"\0" * 5,
    ),
    case(
        "binary-leftover",
        "3 bytes of binary data belong to no input",
        [binary_input(X, 8), S],
        b"\0" * 11,
    ),
    case("shape-2d", "shape [2, 2] must be [N] or [N, 1]", [{**X, "shape": [2, 2]}, S]),
    case("shape-3d", "must be [N] or [N, 1]", [{**X, "shape": [2, 1, 1]}, S]),
    case("shape-scalar", "must be [N] or [N, 1]", [{**X, "shape": []}, S]),
    case("no-rows", "has no rows", [{**X, "shape": [0], "data": []}, {**S, "shape": [0]}]),
    case(
        "rows-differ",
        "input 's' has 3 rows, earlier inputs have 2",
        [X, {**S, "shape": [3], "data": ["a", "b", "c"]}],
    ),
    case(
        "too-many-rows",
        "over the limit of 1000",
        [{**X, "shape": [1001, 1], "data": [0.0] * 1001}, S],
        error=PayloadTooLarge,
    ),
    case("count-mismatch", "has 3 data elements, shape [2] needs 2", [{**X, "data": [1, 2, 3]}, S]),
    case("data-not-list", "'data' must be a list", [{**X, "data": 1.0}, S]),
    case("data-bool", "data must be numbers, got True", [{**X, "data": [1, True]}, S]),
    case("data-string", "data must be numbers, got '1.5'", [{**X, "data": [1, "1.5"]}, S]),
    case("data-null", "data must be numbers, got None", [{**X, "data": [None, 1]}, S]),
    case(
        "int-data-float",
        "integers in the range of INT64",
        [{**X, "datatype": "INT64", "data": [1, 2.5]}, S],
    ),
    case(
        "int-data-range",
        "integers in the range of UINT8, got 256",
        [{**X, "datatype": "UINT8", "data": [1, 256]}, S],
    ),
    case("bytes-data-number", "BYTES data must be strings, got 2", [X, {**S, "data": ["a", 2]}]),
    case(
        "bytes-data-null", "BYTES data must be strings, got None", [X, {**S, "data": [None, "a"]}]
    ),
    case(
        "numeric-size",
        "input 'x': 6 bytes of FP32, needs 8",
        [binary_input(X, 6), S],
        b"\0" * 6,
    ),
    case(
        "bytes-short-length",
        "binary element 1 is truncated",
        [X, binary_input(S, 7)],
        bytes_tensor("a") + b"\0\0",
    ),
    case(
        "bytes-short-element",
        "binary element 1 is truncated",
        [X, binary_input(S, 9)],
        bytes_tensor("a") + b"\x05\0\0\0",
    ),
    case(
        "bytes-utf8",
        "input 's': element 0 is not UTF-8",
        [X, binary_input(S, 10)],
        bytes_tensor(b"\xff", "a"),
    ),
    case(
        "bytes-too-few",
        "binary data is not exactly 2 elements",
        [X, binary_input(S, 5)],
        bytes_tensor("a"),
    ),
    case(
        "bytes-too-many",
        "binary data is not exactly 2 elements",
        [X, binary_input(S, 15)],
        bytes_tensor("a", "b", "c"),
    ),
    case(
        "bytes-for-fp32",
        "input 'x' has datatype BYTES, expected FP32",
        [{**X, "datatype": "BYTES", "data": ["1", "2"]}, S],
    ),
    case(
        "fp32-for-bytes",
        "input 's' has datatype FP32, expected BYTES",
        [X, {**S, "datatype": "FP32", "data": [1, 2]}],
    ),
    case(
        "bool-for-fp32",
        "input 'x' has datatype BOOL, expected FP32",
        [{**X, "datatype": "BOOL", "data": [True, False]}, S],
    ),
    case("long-name-clipped", "unknown input 'yyyyyyyyyy", [X, S, {**X, "name": "y" * 10_000}]),
]


@pytest.mark.parametrize(("body", "header_length", "error", "phrase"), ERRORS)
def test_error_rules(
    body: bytes, header_length: int | None, error: type[Exception], phrase: str
) -> None:
    with pytest.raises(error) as raised:
        decode(body, header_length, specs=XS)
    assert raised.type is error
    assert phrase in str(raised.value)
    assert len(str(raised.value)) < 200


def test_each_feature_kind_has_its_v2_datatype() -> None:
    assert {kind: FEATURE_DATATYPES[kind.dtype] for kind in FeatureKind} == {
        FeatureKind.numeric: "FP32",
        FeatureKind.categorical: "BYTES",
        FeatureKind.text: "BYTES",
    }
    assert InputSpec.of_feature("age", "float32") == InputSpec("age", "FP32")
    assert InputSpec.of_feature("city", "string") == InputSpec("city", "BYTES")
    assert DATATYPES["int64"] == "INT64"  # class labels, an output
    assert FEATURE_DATATYPES.items() <= DATATYPES.items()


def test_no_other_module_of_the_service_spells_a_v2_datatype() -> None:
    """The dtype -> datatype mapping lives in the V2 codec only (service/codecs/v2.py and
    the tensor rules it shares with the gRPC front, service/codecs/tensors.py)."""
    names = {"FP32", "BYTES", "INT64"}
    found = {}
    codec = {REPO / "service" / "codecs" / name for name in ("v2.py", "tensors.py")}
    for path in sorted((REPO / "service").rglob("*.py")):
        if path in codec:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names
        ]
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert found == {}, f"use service.codecs.v2.DATATYPES: {found}"


# -- the one-pass path for the usual request (service/codecs/v2.py: _plain_inputs) ----------

_USUAL = [
    ("size", np.array([1.5, 2, -3, 4e-3], np.float32), "FP32"),
    ("price", np.array([0.1, 1e10, -2, 0], np.float64), "FP64"),
    ("count", np.array([1, -7, 2**40, 0], np.float32), "FP32"),
    ("city", CITIES, "BYTES"),
]
NEAR = {  # per field: values near a valid one, and anything at all
    "name": st.sampled_from([s.name for s in SPECS]),  # a name given twice, one missing
    "shape": st.lists(st.integers(-1, 5) | st.booleans() | st.floats(0, 5), max_size=3),
    "datatype": st.sampled_from(["FP32", "FP64", "FP16", "INT64", "BYTES", "BOOL", "x"]),
    "data": st.lists(  # the right length, with a value of the wrong kind now and then
        st.integers(-1, 5) | st.floats() | st.booleans() | st.text(max_size=2) | st.none(),
        min_size=4,
        max_size=4,
    )
    | st.lists(st.integers(-1, 5) | st.floats(allow_nan=False) | st.text(max_size=2), max_size=5),
    "parameters": st.sampled_from(  # the right size, as a float or beside another parameter
        [{"binary_data_size": 16.0}, {"binary_data_size": 16, "x": 1}, {"binary_data_size": 16}]
    )
    | st.fixed_dictionaries({"binary_data_size": st.integers(-1, 20) | st.floats(0, 20)}),
}


def usual_request(binary: bool) -> tuple[bytes, int | None]:
    """As tritonclient sends it: every input JSON, or (numeric features only: the one-pass
    path reads FP32 raw data, not BYTES) every input binary FP32."""
    inputs = []
    for name, array, datatype in _USUAL:
        if binary and datatype == "BYTES":
            continue
        tensor = triton.InferInput(name, [len(array)], "FP32" if binary else datatype)
        tensor.set_data_from_numpy(array.astype(np.float32) if binary else array, binary)
        inputs.append(tensor)
    return Client.generate_request_body(inputs)


def decoded_or_error(body: bytes, header_length: int | None) -> Any:
    specs = SPECS if header_length is None else [s for s in SPECS if s.datatype == "FP32"]
    try:
        got = decode(body, header_length, max_rows=50, specs=specs)
    except InvalidInput as error:
        return type(error), str(error)
    return (
        got.rows,
        [(name, column.dtype.str, column.tolist()) for name, column in got.columns.items()],
    )


def general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.codecs.v2 as codec

    monkeypatch.setattr(codec, "_plain_inputs", lambda *_: None)
    monkeypatch.setattr(codec, "_binary_plan", lambda *_: None)


@pytest.mark.parametrize("binary", [False, True])
def test_the_usual_request_takes_the_one_pass_path(
    binary: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.codecs.v2 as codec

    body, header_length = usual_request(binary)
    taken = []
    # a binary header is read once into a plan (_binary_plan), a JSON request each time
    name = "_binary_plan" if binary else "_plain_inputs"
    codec._binary_plan.cache_clear()
    plain = getattr(codec, name)
    monkeypatch.setattr(codec, name, lambda *a: taken.append(plain(*a)) or taken[-1])
    fast = decoded_or_error(body, header_length)
    assert taken and taken[0] is not None
    general_path(monkeypatch)
    assert fast == decoded_or_error(body, header_length)
    names = [s.name for s in SPECS if not binary or s.datatype == "FP32"]
    assert fast[0] == 4 and [c[0] for c in fast[1]] == names


@settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    binary=st.booleans(),
    index=st.integers(0, 3),
    field=st.sampled_from([*NEAR, "extra", "drop", "twice"]),
    draw=st.data(),
)
def test_the_one_pass_path_answers_as_the_general_path(
    binary: bool, index: int, field: str, draw: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = draw.draw(NEAR.get(field, JSONISH) | JSONISH)
    body, header_length = usual_request(binary)
    split = len(body) if header_length is None else header_length
    doc, rest = orjson.loads(body[:split]), body[split:]
    index %= len(doc["inputs"])  # a binary request has no BYTES input
    if field == "drop":
        del doc["inputs"][index]
    elif field == "twice":
        doc["inputs"].append(doc["inputs"][index])
    else:
        doc["inputs"][index][field] = value
    header = orjson.dumps(doc)
    body, header_length = header + rest, (len(header) if rest else None)
    fast = decoded_or_error(body, header_length)
    with monkeypatch.context() as patched:
        general_path(patched)
        assert fast == decoded_or_error(body, header_length)


@pytest.mark.parametrize(
    ("binary", "index", "field", "value"),
    [
        (True, 0, "parameters", {"binary_data_size": 16.0}),
        (True, 0, "parameters", {"binary_data_size": 16, "x": 1}),
        (True, 2, "parameters", {"binary_data_size": 12}),
        (True, 1, "datatype", "FP64"),
        (True, 1, "parameters", {"binary_data_size": 16.0}),  # a set would merge it with 16
        (False, 2, "shape", [4.0]),
        (False, 2, "shape", [4, True]),
        (True, 1, "parameters", {"binary_data_size": 16, "binary_data": True}),
        (False, 0, "data", [1.0, 2.0, True, 4.0]),
        (False, 3, "data", ["a", "b", 3, "d"]),
        (False, 1, "name", "size"),
        (False, 0, "shape", [4.0]),
        (False, 0, "shape", [True]),
        (False, 0, "shape", [4, 2]),
        (False, 0, "shape", [4, True]),
        (False, 0, "datatype", "INT64"),
    ],
)
def test_near_misses_get_the_general_paths_answer(
    binary: bool, index: int, field: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, header_length = usual_request(binary)
    split = len(body) if header_length is None else header_length
    doc, rest = orjson.loads(body[:split]), body[split:]
    doc["inputs"][index][field] = value
    header = orjson.dumps(doc)
    body, header_length = header + rest, (len(header) if rest else None)
    fast = decoded_or_error(body, header_length)
    general_path(monkeypatch)
    assert fast == decoded_or_error(body, header_length)


# -- a header seen before (service/codecs/v2.py: _binary_plan) ------------------------------


FP32_SPECS = [s for s in SPECS if s.datatype == "FP32"]


def fp32_request(values: np.ndarray, request_id: str | None = None) -> tuple[bytes, int]:
    """tritonclient's binary request of ``values`` (rows, 3 inputs)."""
    inputs = []
    for j, spec in enumerate(FP32_SPECS):
        tensor = triton.InferInput(spec.name, [len(values), 1], "FP32")
        tensor.set_data_from_numpy(values[:, j : j + 1].astype(np.float32), binary_data=True)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("label", binary_data=True)]
    body, header_length = Client.generate_request_body(
        inputs, outputs=outputs, request_id=request_id or ""
    )
    assert header_length is not None
    return body, header_length


def test_a_header_seen_before_is_decoded_once_and_each_body_gets_its_own_values() -> None:
    import service.codecs.v2 as codec

    codec._binary_plan.cache_clear()
    first = np.array([[1.5, 2.0, 3.0], [4.0, -5.0, 6.25]])
    second = first * -7 + 1
    body, header_length = fp32_request(first, "42")
    again, same_length = fp32_request(second, "42")
    assert body[:header_length] == again[:same_length]  # only the binary data differs

    one = decode(body, header_length, specs=FP32_SPECS)
    two = decode(again, same_length, specs=FP32_SPECS)
    info = codec._binary_plan.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    for got, values in ((one, first), (two, second)):
        assert got.id == "42" and got.rows == 2
        assert got.outputs == [RequestedOutput("label", True)]
        assert list(got.columns) == [s.name for s in FP32_SPECS]
        np.testing.assert_array_equal(np.column_stack(list(got.columns.values())), values)
    # Each request its own parameters and outputs: changing one changes no other.
    one.parameters["x"] = 1
    assert one.outputs is not None
    one.outputs.clear()
    three = decode(body, header_length, specs=FP32_SPECS)
    assert three.parameters == {} and three.outputs == [RequestedOutput("label", True)]


@pytest.mark.parametrize("cut", [-4, -1, 4])
def test_a_header_seen_before_with_the_wrong_binary_length_gets_the_general_error(
    cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:

    body, header_length = fp32_request(np.ones((2, 3)))
    decode(body, header_length, specs=FP32_SPECS)  # the header is known now
    wrong = body[:cut] if cut < 0 else body + b"\0" * cut
    with pytest.raises(InvalidInput) as cached:
        decode(wrong, header_length, specs=FP32_SPECS)
    general_path(monkeypatch)
    with pytest.raises(InvalidInput) as general:
        decode(wrong, header_length, specs=FP32_SPECS)
    assert str(cached.value) == str(general.value)


def test_a_header_is_known_per_model_and_per_row_limit() -> None:
    import service.codecs.v2 as codec

    body, header_length = fp32_request(np.ones((3, 3)))
    assert decode(body, header_length, specs=FP32_SPECS).rows == 3
    with pytest.raises(PayloadTooLarge):  # the same header, a lower limit
        decode(body, header_length, specs=FP32_SPECS, max_rows=2)
    other = [InputSpec(s.name, "FP32") for s in FP32_SPECS]  # another model, the same names
    assert decode(body, header_length, specs=other).rows == 3
    reordered = FP32_SPECS[::-1]  # a model whose inputs come in another order
    got = decode(body, header_length, specs=reordered)
    assert list(got.columns) == [s.name for s in reordered]
    assert codec._binary_plan.cache_info().currsize >= 3
