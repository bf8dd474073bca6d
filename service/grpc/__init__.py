"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on the REST
routes' data plane, with grpc.health.v1 and, when asked for, server reflection.

- ``proto/``: the official ``open_inference_grpc.proto`` and the stubs generated from it
  (``make protos``).
- ``codec.py``: a ``ModelInferRequest`` as model columns, outputs as a ``ModelInferResponse``,
  by the REST codec's rules (service/codecs/tensors.py).
- ``status.py``: Kiln errors as gRPC status codes, one table.
- ``servicer.py``: the six RPCs; ``health.py``: grpc.health.v1 by the readiness rules;
  ``keys.py``: API keys from the ``authorization`` metadata.
- ``server.py``: the grpc.aio server each worker starts on its own event loop.

Nothing here is imported unless ``KILN_SERVE_GRPC_PORT`` is set (not 0): service/bento.py
imports ``service.grpc.server`` in the worker's start-up hook.
"""
