"""Kiln's shared core: errors, the artifact format, the model store, model resolution and the
inference core (ONNX Runtime sessions, value rules, the in-process Predictor).

Both sides use it: ``training/`` and ``service/`` import ``kiln``, never each other. Importing
``kiln`` loads nothing heavy: ``kiln.Predictor`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.predictor import Predictor

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from kiln.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
