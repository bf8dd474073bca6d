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

    openmp_threads: int = Field(default=1, ge=1, le=256)
    """OpenMP threads HistGradientBoosting fits and predicts with while training (it has no
    ``n_jobs``; XGBoost and LightGBM are given ``n_jobs=1``). One by default: on a busy machine
    its threads wait on each other (a 5,000-row fit on a loaded 2-core machine took 0.2-0.6 s
    on one thread and 2-18 s on two), and one thread gives the same model on every run."""

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
