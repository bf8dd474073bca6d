"""Training settings: one object, read from ``KILN_TRAIN_*`` environment variables.

The model store location is BentoML's own ``BENTOML_HOME`` (default ``~/bentoml``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TrainingSettings"]


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KILN_TRAIN_", extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    opset: int = Field(default=18, ge=13, le=22)
    """ONNX opset of the default domain the models are exported at (13-22)."""

    ml_opset: int = Field(default=3, ge=1, le=3)
    """Opset of the ``ai.onnx.ml`` domain (trees, linear classifiers, scalers, encoders)."""

    worst_rows: int = Field(default=5, ge=1, le=100)
    """How many of the worst-agreeing rows a failed verification shows."""

    progress: bool = True
    """Show a live status of each step on stderr (turned off when stderr is not a terminal)."""

    reports_dir: Path | None = Path("reports")
    """Where each training run writes its report (``<dir>/<name>-<version>/report.html``);
    ``none`` or empty: no report."""

    @field_validator("reports_dir", mode="before")
    @classmethod
    def _no_reports(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @property
    def target_opset(self) -> dict[str, int]:
        return {"": self.opset, "ai.onnx.ml": self.ml_opset}
