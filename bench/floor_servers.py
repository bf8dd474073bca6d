"""The two transports of bench/grpc_vs_rest.py with nothing behind them: their floor.

``grpc PORT``: grpcio's asyncio server (as Kiln's gRPC front runs it: one process, the
asyncio loop, the RPC registered), whose ModelInfer parses the request with Kiln's own
stubs and answers one fixed ModelInferResponse. ``http PORT``: uvicorn with httptools on
the asyncio loop (as Kiln's worker runs it), an ASGI app that reads the body and answers
fixed bytes. Neither decodes tensors, batches or runs a model, so what each costs per call
is what its transport alone costs this machine; bench/grpc_vs_rest.py loads both with the
same h2load runs as Kiln, and reports their calls/s and CPU per call beside Kiln's.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: service/ importable
    sys.path.insert(0, str(HERE.parent))

SERVICE = "inference.GRPCInferenceService"
ANSWER = b'{"model_name":"churn","outputs":[]}'


async def _grpc(port: int) -> None:
    import grpc

    from service.grpc.proto import open_inference_grpc_pb2 as pb

    answer = pb.ModelInferResponse(model_name="churn", model_version="1")
    answer.outputs.add(name="label", datatype="BYTES", shape=[1, 1])
    answer.raw_output_contents.append(b"\x02\x00\x00\x00no")

    async def infer(request: Any, context: Any) -> Any:
        return answer

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString,
        )
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The HTTP floor: read the whole body, answer ``ANSWER``."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "grpc":
        asyncio.run(_grpc(port))
    else:
        import uvicorn

        uvicorn.run(
            app, host="127.0.0.1", port=port, http="httptools", loop="asyncio",
            access_log=False, log_level="warning",
        )  # fmt: skip


if __name__ == "__main__":
    main()
