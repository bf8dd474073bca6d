"""Request bodies for the serving benchmark, built from the models' own data.

Every server gets the same rows: the first ``rows`` rows (cycled) of the spec's bundled
scikit-learn data set, with the column names Kiln's trainer gives them, keyed by the model's
features as ``kiln.json`` lists them. A body is written to a file once, with the headers its
load run needs (wrk and hey send it as it is):

- ``records``: ``{"instances": [{feature: value, ...}, ...]}``, Kiln's ``/v1`` JSON and the
  plain and FastAPI peers' body;
- ``v2-json``: an Open Inference Protocol request, one input per feature with its ``data`` in
  JSON (MLServer's scikit-learn runtime reads it with the pandas codec);
- ``v2-tensor``: the request a tensor server is made for: ONE FP32 input of shape
  ``[N, n_features]`` (the features in ``kiln.json``'s order), JSON data, asking for the
  ``predict_proba`` output: MLServer's default (numpy) codec and the Triton peer's model
  both take it as it is;
- ``v2-fp32``: Kiln's V2 REST request as ``tritonclient.http`` sends it with JSON data: one
  FP32 (or BYTES) input per feature, shape ``[N, 1]``, every output;
- ``v2-binary``: the same request with every input as raw little-endian bytes after the JSON
  header (Triton's binary tensor extension, what ``tritonclient.http`` sends), answered with
  binary outputs too.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

JSON = "application/json"
HEADER_LENGTH = "Inference-Header-Content-Length"
# The v2-tensor body's names; the Triton peer is started with them (bench/servers.py).
TENSOR_INPUT = "input"
TENSOR_OUTPUT = "predict_proba"  # the name MLServer's scikit-learn runtime knows


class WorkloadError(RuntimeError):
    """A body cannot be built for this model (the message says why)."""


@dataclass(frozen=True)
class Body:
    """A request body on disk and how to send it."""

    kind: str  # records, v2-json, v2-tensor, v2-binary
    rows: int
    path: Path
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)

    def read(self) -> bytes:
        return self.path.read_bytes()


def snake(name: str) -> str:
    """Column names as Kiln's trainer writes them for scikit-learn's bundled data."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def bundled_dataset(spec_path: Path) -> str:
    import yaml

    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    dataset = (spec.get("data") or {}).get("sklearn")
    if not dataset:
        raise WorkloadError(
            f"{spec_path}: the benchmark needs a spec on bundled data (data.sklearn)"
        )
    return str(dataset)


def instances(spec_path: Path, model_dir: Path, rows: int) -> list[dict[str, Any]]:
    """``rows`` rows of the spec's data, keyed by the model's features, as JSON values."""
    from kiln.artifact import read_metadata

    return dataset_rows(bundled_dataset(spec_path), read_metadata(model_dir).features, rows)


def dataset_rows(dataset: str, features: Sequence[Any], rows: int) -> list[dict[str, Any]]:
    """``rows`` records of scikit-learn's bundled ``dataset`` (cycled), keyed by ``features``
    (``kiln.json`` features: ``.name`` and ``.kind``): floats, or strings."""
    import sklearn.datasets

    from kiln.artifact import FeatureKind

    loader = getattr(sklearn.datasets, f"load_{dataset}", None)
    if loader is None:
        raise WorkloadError(f"scikit-learn has no bundled data set {dataset!r}")
    frame = loader(as_frame=True).frame.rename(columns=snake)
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise WorkloadError(f"features {missing} are not columns of {dataset}")
    picked = frame.iloc[np.arange(rows) % len(frame)]
    columns = {
        f.name: (
            picked[f.name].astype(float).tolist()
            if f.kind is FeatureKind.numeric
            else picked[f.name].astype(str).tolist()
        )
        for f in features
    }
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]


def records(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def v2_json(rows: list[dict[str, Any]], *, outputs: list[str] | None = None) -> bytes:
    """One input per feature, shape [N], FP64 or BYTES, data in JSON; pandas content type."""
    inputs = []
    for name, value in rows[0].items():
        numeric = isinstance(value, float)
        inputs.append(
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": [row[name] for row in rows],
            }
        )
    doc: dict[str, Any] = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    if outputs:
        doc["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(doc).encode()


def v2_tensor(rows: list[dict[str, Any]]) -> bytes:
    """One FP32 input ``[N, n_features]``, row-major, the features in the rows' key order."""
    names = list(rows[0])
    other = [name for name in names if not isinstance(rows[0][name], float)]
    if other:
        raise WorkloadError(f"features {other} are not numeric: no one FP32 tensor for them")
    doc = {
        "inputs": [
            {
                "name": TENSOR_INPUT,
                "shape": [len(rows), len(names)],
                "datatype": "FP32",
                "data": [row[name] for row in rows for name in names],
            }
        ],
        "outputs": [{"name": TENSOR_OUTPUT}],
    }
    return json.dumps(doc).encode()


def v2_binary(rows: list[dict[str, Any]], outputs: list[str]) -> tuple[bytes, int]:
    """(body, JSON header length): every input as FP32 or BYTES binary data, binary outputs."""
    inputs, chunks = [], []
    for name, value in rows[0].items():
        if isinstance(value, float):
            raw = np.asarray([row[name] for row in rows], dtype="<f4").tobytes()
            datatype = "FP32"
        else:
            encoded = [str(row[name]).encode() for row in rows]
            raw = b"".join(struct.pack("<I", len(e)) + e for e in encoded)
            datatype = "BYTES"
        inputs.append(
            {
                "name": name,
                "shape": [len(rows), 1],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    header = json.dumps(
        {
            "inputs": inputs,
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
    ).encode()
    return header + b"".join(chunks), len(header)


def v2_fp32_json(rows: list[dict[str, Any]]) -> bytes:
    """One input per feature as tritonclient.http sends it with ``binary_data=False``: shape
    [N, 1] (the model metadata's), FP32 or BYTES, ``data`` a flat JSON list; all outputs."""
    inputs = []
    for name, value in rows[0].items():
        numeric = isinstance(value, float)
        data = [row[name] for row in rows]
        inputs.append(
            {
                "name": name,
                "shape": [len(rows), 1],
                "datatype": "FP32" if numeric else "BYTES",
                "data": [float(np.float32(v)) for v in data] if numeric else data,
            }
        )
    return json.dumps({"inputs": inputs}).encode()


def write(directory: Path, name: str, kind: str, rows: int, data: bytes, **extra: Any) -> Body:
    path = directory / f"{name}.body"
    path.write_bytes(data)
    return Body(kind, rows, path, **extra)


def bodies_for(
    spec_path: Path, model_dir: Path, model: str, directory: Path, bulk_rows: int
) -> dict[str, Body]:
    """Every body the benchmark sends for one model, keyed ``<kind>-<rows>``."""
    from kiln.artifact import read_metadata

    outputs = [o.name for o in read_metadata(model_dir).outputs]
    one = instances(spec_path, model_dir, 1)
    bulk = instances(spec_path, model_dir, bulk_rows)
    found = {
        "records-1": write(directory, f"{model}-records-1", "records", 1, records(one)),
        f"records-{bulk_rows}": write(
            directory, f"{model}-records-{bulk_rows}", "records", bulk_rows, records(bulk)
        ),
        "v2-json-1": write(
            directory,
            f"{model}-v2-json-1",
            "v2-json",
            1,
            v2_json(one, outputs=["predict_proba"]),
        ),
        f"v2-json-{bulk_rows}": write(
            directory,
            f"{model}-v2-json-{bulk_rows}",
            "v2-json",
            bulk_rows,
            v2_json(bulk, outputs=["predict_proba"]),
        ),
    }
    for rows in (one, bulk):
        key = f"v2-tensor-{len(rows)}"
        found[key] = write(directory, f"{model}-{key}", "v2-tensor", len(rows), v2_tensor(rows))
    # Kiln's V2 REST route, one row, as tritonclient sends it: JSON, and binary tensors.
    found["v2-fp32-1"] = write(directory, f"{model}-v2-fp32-1", "v2-fp32", 1, v2_fp32_json(one))
    data, header = v2_binary(one, outputs)
    found["v2-binary-1"] = write(
        directory,
        f"{model}-v2-binary-1",
        "v2-binary",
        1,
        data,
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(header)},
    )
    data, header = v2_binary(bulk, outputs)
    found[f"v2-binary-{bulk_rows}"] = write(
        directory,
        f"{model}-v2-binary-{bulk_rows}",
        "v2-binary",
        bulk_rows,
        data,
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(header)},
    )
    return found
