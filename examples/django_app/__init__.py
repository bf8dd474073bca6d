"""Embedding Kiln in a Django project: in-process Predictors, no HTTP hop to a model server.

The Django twin of examples/flask_app: the same routes answer the same way (a parity test,
tests/integration/test_django_example.py, holds them to it), plus ``POST /models/<name>/predict``
for any model in the store and ``GET /healthz``. See README.md next to this file.
"""
