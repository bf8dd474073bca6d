"""Triton peer: one Kiln ONNX model behind NVIDIA Triton Inference Server, through PyTriton.

PyPI's ``nvidia-pytriton`` bundles a ``tritonserver`` build and its Python backend, so Triton
runs here from a venv (``build/bench-venvs/triton``, pins in ``bench/peers/triton.txt``). The
model is the same ``model.onnx`` Kiln serves, in ONE ONNX Runtime session, bound to Triton as
a model with one FP32 input of shape ``[N, n_features]`` (the features in ``kiln.json``'s
order) and one FP32 output, the class probabilities ``[N, n_classes]`` in ``kiln.json``'s class
order. Triton owns the HTTP and gRPC fronts, the V2 protocol and the dynamic batcher: the
requests it merges arrive here as one list, are stacked, and run as one ONNX Runtime call::

    build/bench-venvs/triton/bin/python bench/peers/triton_server.py --model-dir DIR \\
        --name breast-cancer --http-port 8000 --grpc-port 8001 --metrics-port 8002 \\
        [--workspace DIR] [--max-batch-size 64] [--queue-delay-us 0] [--instances 1] \\
        [--intra-op-threads 1]

Every front listens on 127.0.0.1 only. ``bench/servers.py`` starts it for the serving
benchmark, which waits for ``/v2/models/<name>/ready``. This runs in the peer's venv, which
has no Kiln: ``kiln.json`` is read as plain JSON (the fields ``kiln/artifact.py`` defines).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

HOST = "127.0.0.1"
PROBABILITIES = "probabilities"  # the ONNX output Kiln's exporter names (kiln.json outputs)


def read_model(model_dir: Path) -> tuple[list[str], int]:
    """(ONNX input per feature in ``kiln.json``'s order, number of classes); numeric only."""
    meta = json.loads((model_dir / "kiln.json").read_text(encoding="utf-8"))
    features = meta["features"]
    other = [f["name"] for f in features if f["kind"] != "numeric"]
    if other:  # one FP32 tensor cannot carry them
        raise SystemExit(f"{model_dir}: features {other} are not numeric: no one FP32 tensor")
    if PROBABILITIES not in [o["name"] for o in meta["outputs"]]:
        raise SystemExit(f"{model_dir}: no {PROBABILITIES!r} output (a classifier is needed)")
    return [f["input"] for f in features], len(meta["classes"] or [])


def open_session(model_dir: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads  # 0: ONNX Runtime's default (one per core)
    return ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def infer_function(
    session: ort.InferenceSession, inputs: list[str], input_name: str, output_name: str
) -> Callable[..., Any]:
    """Triton's callable: the batch Triton merged, as ``{input_name: [N, n]}``, in one call."""

    @batch  # pytriton's decorator: the list of requests in, stacked along the first axis
    def infer(**tensors: np.ndarray) -> dict[str, np.ndarray]:
        columns = np.ascontiguousarray(tensors[input_name].T, dtype=np.float32)
        feeds = {name: columns[i].reshape(-1, 1) for i, name in enumerate(inputs)}
        (probabilities,) = session.run([PROBABILITIES], feeds)
        return {output_name: probabilities}

    return infer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a Kiln model version")
    parser.add_argument("--name", required=True, help="the model's name in Triton")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument(
        "--workspace", type=Path,
        help="a folder that does not exist yet, for Triton's copy of itself and its model store "
        "(default: a new one under ~/.cache/pytriton); removed on exit",
    )  # fmt: skip
    parser.add_argument("--input", default="input", help="the input tensor's name")
    parser.add_argument("--output", default="predict_proba", help="the output tensor's name")
    parser.add_argument("--max-batch-size", type=int, default=64, help="rows per merged call")
    parser.add_argument(
        "--queue-delay-us", type=int, default=0,
        help="how long Triton's batcher holds a request for others to join (0: not at all)",
    )  # fmt: skip
    parser.add_argument("--instances", type=int, default=1, help="model instances (threads)")
    parser.add_argument("--intra-op-threads", type=int, default=1, help="0: ORT's default")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # SIGTERM (the benchmark stopping its servers) unwinds through ``with Triton``, which stops
    # tritonserver and removes its workspace (a 30 MB copy of the server) and shared memory.
    signal.signal(signal.SIGTERM, _terminate)
    # Triton's Python backend stub is linked against libpython but the wheel does not say where
    # it is; pytriton starts tritonserver with a copy of this environment, so set it here.
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
    inputs, classes = read_model(args.model_dir)
    session = open_session(args.model_dir, args.intra_op_threads)
    # One session for every instance: InferenceSession.run is thread-safe.
    infer = infer_function(session, inputs, args.input, args.output)
    config = TritonConfig(
        http_address=HOST,
        http_port=args.http_port,
        grpc_address=HOST,
        grpc_port=args.grpc_port,
        metrics_address=HOST,
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    model_config = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
    )
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=[infer] * args.instances,
            inputs=[Tensor(name=args.input, dtype=np.float32, shape=(len(inputs),))],
            outputs=[Tensor(name=args.output, dtype=np.float32, shape=(classes,))],
            config=model_config,
        )
        print(f"serving {args.name} from {args.model_dir} on http://{HOST}:{args.http_port}")
        sys.stdout.flush()
        triton.serve()
    return 0


def _terminate(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
