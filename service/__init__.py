"""Serving: ONNX Runtime behind one data plane, a BentoML service and an in-process Predictor.

``from service import Predictor`` is the in-process entry point; the BentoML service is
``service.bento:Kiln`` (see bentofile.yaml). Importing this package loads no model.
"""

from service.predictor import Predictor

__all__ = ["Predictor"]
