"""Serving settings: one object, read from ``KILN_SERVE_*`` environment variables.

Validated when the service starts; a bad value stops start-up with a message naming it.
The model store is BentoML's own ``BENTOML_HOME``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["BatchLimits", "ServingSettings"]


class BatchLimits(BaseModel):
    """Adaptive batching limits of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_rows: int = Field(default=512, ge=1)
    """Most rows one ONNX Runtime call takes. Larger requests are split, never merged."""

    max_wait_ms: float = Field(default=1.0, ge=0, le=1000)
    """How long the first request of a batch may wait for others to join it."""

    enabled: bool = True
    """False: never merge requests; each is its own call (larger ones still split)."""


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KILN_SERVE_", extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    models: list[str] = Field(default_factory=list)
    """Serve exactly these (`NAME` or `NAME:VERSION`, JSON list). Empty: every model in the
    store, at its newest version that passed its quality gate."""

    providers: list[str] | None = None
    """ONNX Runtime execution providers in order of preference, e.g.
    `["CUDAExecutionProvider", "CPUExecutionProvider"]`. Default: CUDA then CPU where
    onnxruntime-gpu is installed, else CPU."""

    require_gpu: bool = False
    """Refuse to start unless every model runs on the CUDA provider."""

    intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime threads per model call (0: one per core). One suits many workers."""

    batch: BatchLimits = Field(default_factory=BatchLimits)
    """Default batching limits (JSON), e.g. `{"max_batch_rows": 512, "max_wait_ms": 1}`."""

    batch_overrides: dict[str, BatchLimits] = Field(default_factory=dict)
    """Per-model batching limits (JSON), e.g. `{"churn": {"max_batch_rows": 64}}`."""

    max_queue_rows: int = Field(default=20_000, ge=1)
    """Rows waiting for a model beyond which new requests get 503 with Retry-After."""

    max_rows_per_request: int = Field(default=10_000, ge=1)
    """Most rows (instances) one request may carry; more is answered 413."""

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger is answered 413."""

    poll_seconds: float = Field(default=30.0, ge=0)
    """How often to look for a newly promoted production version and swap it in without
    dropping requests (0: never; models pinned as NAME:VERSION never change)."""

    unknown_features: Literal["reject", "ignore"] = "reject"
    """What to do with a feature or input the model does not know: answer 400, or drop it."""

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """API keys, comma-separated (several, for rotation). When any key is set (here or in
    `api_keys_file`), every route but health and metrics needs `Authorization: Bearer <key>`."""

    api_keys_file: Path | None = None
    """A file of API keys, one per line (a mounted Secret); read again when it changes."""

    protect_health: bool = False
    """With API keys set, also require a key on `/livez`, `/readyz`, `/metrics` and the V2
    health routes (by default they stay open for probes and Prometheus)."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):  # a JSON list, like the other list settings
                return json.loads(value)
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    def limits_for(self, model: str) -> BatchLimits:
        return self.batch_overrides.get(model, self.batch)
