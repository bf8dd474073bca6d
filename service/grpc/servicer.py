"""``inference.GRPCInferenceService``: the six RPCs of the Open Inference Protocol over gRPC.

Each RPC only translates, as a REST route does (service/app.py): it decodes the message with
service/grpc/codec.py, calls the same :class:`service.dataplane.DataPlane` (``admit`` with
the message's size, then ``infer``: gRPC and REST requests queue in the same batcher), and
answers a Kiln error with the status service/grpc/status.py gives it and the same message
REST sends as ``error``. What differs from REST, and why:

- ``ServerReady`` answers OK with ``ready: false`` (REST: 503), and ``ModelReady`` answers
  ``ready: false`` for a model that failed to load (REST: 503): the protocol's answer has the
  boolean for it. An unknown model or version is NOT_FOUND on both.
- ``ServerMetadata`` lists no extension: ``binary_tensor_data`` is REST's; gRPC has raw
  contents in the protocol itself.
- ``KILN_SERVE_MAX_CONCURRENCY`` counts this front's calls apart from REST's requests (each
  front is limited to it in each worker); ``ServerLive``, ``ServerReady`` and health calls are
  never limited, as REST's health routes.
- ``KILN_SERVE_TIMEOUT`` bounds a ``ModelInfer`` as it bounds a REST request (504 there,
  DEADLINE_EXCEEDED here, with the same words); a client's own deadline may be shorter.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from kiln.errors import KilnError, ModelNotReady, ServiceUnavailable
from service.bodies import off_loop
from service.codecs import tensors
from service.dataplane import DataPlane
from service.grpc import codec
from service.grpc.proto import open_inference_grpc_pb2 as pb
from service.grpc.proto import open_inference_grpc_pb2_grpc as pb_grpc
from service.grpc.status import AT_LIMIT, RETRY_PUSHBACK, at_limit_message, code_of, trailers_of

__all__ = ["PROTOCOL", "CallCounter", "InferenceServicer"]

log = logging.getLogger("kiln.service")

PROTOCOL = "grpc"
"""The protocol name whose bytes per row the data plane learns apart (DataPlane.admit)."""

CallCounter = Callable[[str, grpc.StatusCode], None]
"""Counts one answered call: (RPC name, status code)."""


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's RPCs over ``plane()`` (None while the worker starts: UNAVAILABLE)."""

    def __init__(
        self,
        plane: Callable[[], DataPlane | None],
        *,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        count: CallCounter | None = None,
    ) -> None:
        self._plane = plane
        self._limit = max_concurrency
        self._timeout = timeout
        self._active = 0
        self._count = count or (lambda method, code: None)

    def _data_plane(self) -> DataPlane:
        plane = self._plane()
        if plane is None:
            raise ServiceUnavailable("the service has not finished starting; retry shortly")
        return plane

    async def _fail(
        self, context: grpc.aio.ServicerContext, method: str, exc: KilnError
    ) -> NoReturn:
        code = code_of(exc)
        self._count(method, code)
        await context.abort(code, exc.message, trailing_metadata=trailers_of(exc))
        raise AssertionError("abort returned")  # pragma: no cover (abort raises)

    def _ok(self, method: str) -> None:
        self._count(method, grpc.StatusCode.OK)

    # -- health and metadata ------------------------------------------------------------

    async def ServerLive(  # noqa: N802 (the protocol's RPC names)
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        self._ok("ServerLive")
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        plane = self._plane()
        self._ok("ServerReady")
        return pb.ServerReadyResponse(ready=plane is not None and plane.ready)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            self._data_plane().get(request.name, request.version or None)
            ready = True
        except ModelNotReady:  # known, but failed to load (REST: 503 with the reason)
            ready = False
        except KilnError as exc:
            await self._fail(context, "ModelReady", exc)
        self._ok("ModelReady")
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        self._ok("ServerMetadata")
        return pb.ServerMetadataResponse(**tensors.server_metadata([]))

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            served = self._data_plane().get(request.name, request.version or None)
        except KilnError as exc:
            await self._fail(context, "ModelMetadata", exc)
        meta = tensors.model_metadata(served.metadata)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        self._ok("ModelMetadata")
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    # -- inference ------------------------------------------------------------------------

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        if self._limit is not None and self._active >= self._limit:
            self._count("ModelInfer", AT_LIMIT)
            await context.abort(AT_LIMIT, at_limit_message(self._limit), RETRY_PUSHBACK)
        self._active += 1
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await self._infer(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                # the words of REST's 504 (service/traffic.py, as BentoML's own)
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                message = f"Not able to process the request in {self._timeout} seconds"
            else:  # bad input is a Kiln error by now: anything else is ours, and logged
                log.exception("unexpected error in ModelInfer")
                code, message = grpc.StatusCode.INTERNAL, "internal error"
            self._count("ModelInfer", code)
            await context.abort(code, message)
            raise
        finally:
            self._active -= 1

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        name, version = request.model_name, request.model_version or None
        try:
            plane = self._data_plane()
        except KilnError as exc:
            await self._fail(context, "ModelInfer", exc)
        try:
            served = plane.get(name, version)
            size = request.ByteSize()
            # refused here under overload, before the tensors are decoded (service/dataplane.py)
            await plane.admit(name, version, size, PROTOCOL)
            decode = functools.partial(
                codec.decode_request,
                request,
                served.v2_inputs,
                max_rows=plane.settings.max_rows_per_request,
                unknown_inputs=plane.settings.unknown_features,
            )
            decoded = await off_loop(size, decode)
            known = served.output_names
            tensors.check_known_outputs(decoded.outputs, known)
        except KilnError as exc:
            plane.record_error(name, exc)
            await self._fail(context, "ModelInfer", exc)
        try:
            answer = await plane.infer(name, decoded.columns, decoded.rows, version)
        except KilnError as exc:  # counted by the data plane
            await self._fail(context, "ModelInfer", exc)
        binary: Any = decoded.parameters.get("binary_data_output", True)
        response = codec.encode_response(
            model_name=answer.served.name,
            model_version=answer.served.version,
            request_id=decoded.id,
            outputs=[(n, answer.outputs[n]) for n in known],
            requested=decoded.outputs,
            binary_default=binary,
            response_parameters=tensors.response_parameters(answer.warnings, answer.warning_count),
        )
        self._ok("ModelInfer")
        return response
