"""Training: spec -> scikit-learn pipeline -> verified ONNX -> BentoML model store.

Run it as ``kiln train SPEC`` (or ``python -m training train SPEC``); in Python, call
:func:`training.run.train` with a spec from :func:`training.spec.load_spec`.
"""
