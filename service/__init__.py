"""Serving: ONNX Runtime behind one data plane, and the BentoML service over it.

The BentoML service is ``service.bento:Kiln`` (see bentofile.yaml); the in-process entry point
is ``kiln.Predictor``, from the shared core. Importing this package loads no model.
"""
