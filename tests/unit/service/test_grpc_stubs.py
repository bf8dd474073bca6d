"""The committed gRPC stubs (service/grpc/proto/): what ``make protos`` makes from the official
.proto, loadable beside tritonclient's, and grpcio not imported by the service when off."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROTO_DIR = REPO / "service" / "grpc" / "proto"
PROTO = PROTO_DIR / "open_inference_grpc.proto"
STUBS = [
    "open_inference_grpc_pb2.py",
    "open_inference_grpc_pb2.pyi",
    "open_inference_grpc_pb2_grpc.py",
]


def test_the_proto_names_its_source() -> None:
    head = PROTO.read_text().splitlines()[:3]
    assert "kserve/open-inference-protocol" in head[0]
    assert "d49cc23f89d709d87b210ef9449e273ae243984e" in head[1]
    assert "package inference;" in PROTO.read_text()


def test_make_protos_makes_the_committed_stubs(tmp_path: Path) -> None:
    copy = tmp_path / "service" / "grpc" / "proto"
    copy.mkdir(parents=True)
    shutil.copy(PROTO, copy)
    make = ["make", "-s", "-o", ".venv/.installed", "protos", f"PROTO_ROOT={tmp_path}"]
    subprocess.run(make, cwd=REPO, check=True, timeout=60)
    for name in STUBS:
        assert (copy / name).read_text() == (PROTO_DIR / name).read_text(), name


def test_the_stubs_load_beside_tritonclients() -> None:
    """tritonclient registers the same ``inference.*`` names from its own .proto; in the default
    descriptor pool the second file to load would fail ("duplicate symbol")."""
    code = (
        "import tritonclient.grpc.service_pb2 as t\n"
        "from service.grpc.proto import open_inference_grpc_pb2 as ours\n"
        "message = ours.ModelInferRequest(model_name='m', raw_input_contents=[b'1234'])\n"
        "message.inputs.add(name='a', datatype='FP32', shape=[1])\n"
        "theirs = t.ModelInferRequest.FromString(message.SerializeToString())\n"
        "assert (theirs.model_name, theirs.inputs[0].name) == ('m', 'a')\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=REPO, check=True, timeout=60)


def test_the_service_does_not_import_grpc_when_it_is_off() -> None:
    code = (
        "import sys\n"
        "import service.bento\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'grpc' or 'service.grpc' in m]\n"
        "assert not loaded, loaded\n"
    )
    env = {"PATH": "/usr/bin:/bin", "KILN_SERVE_GRPC_PORT": "0"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60, env=env)
