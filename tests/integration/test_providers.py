"""Execution providers: the setting, require_gpu, and where each model's nodes run."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from kiln import Predictor
from kiln.errors import KilnError
from kiln.runtime import CPU, CUDA, ProviderReport
from service.dataplane import DataPlane
from service.settings import ServingSettings

pytestmark = pytest.mark.integration
HAS_CUDA = CUDA in ort.get_available_providers()


def test_default_is_cpu_here_and_every_node_is_counted(served_models: dict[str, Any]) -> None:
    plane = DataPlane.load(ServingSettings(models=["wine"]))
    served = plane.get("wine")
    report = served.runtime.providers
    nodes = served.metadata.onnx_nodes
    assert nodes and nodes.get("ai.onnx.ml", 0) >= 1  # the forest is a TreeEnsembleClassifier
    if not HAS_CUDA:
        assert report.active == [CPU] and report.cpu_nodes == report.nodes == sum(nodes.values())
    assert served.describe()["execution"]["provider"] == report.provider


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_require_gpu_refuses_to_start_without_cuda(served_models: dict[str, Any]) -> None:
    with pytest.raises(KilnError, match="require_gpu is set but the CUDA execution provider"):
        DataPlane.load(ServingSettings(models=["wine"], require_gpu=True))


def test_an_unavailable_provider_is_refused_by_name(served_models: dict[str, Any]) -> None:
    with pytest.raises(KilnError, match="TensorrtExecutionProvider is not available"):
        DataPlane.load(ServingSettings(models=["wine"], providers=["TensorrtExecutionProvider"]))


def test_calls_run_on_the_loop_only_for_models_on_the_cpu(
    served_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batcher times calls in CPU time, which cannot see a call waiting for a device."""
    plane = DataPlane.load(ServingSettings(models=["wine"]))
    served = plane.get("wine")
    inline_max = plane.settings.limits_for("wine").inline_max_ms / 1000
    assert inline_max > 0
    if served.runtime.providers.provider == CPU:
        assert served.batcher.inline_max == inline_max
    on_gpu = ProviderReport([CUDA, CPU], [CUDA, CPU], 10, 2)
    monkeypatch.setattr(served.runtime, "providers", on_gpu)
    assert plane._batcher(served.runtime, served.checks).inline_max == 0


def test_bad_setting_values_stop_start_up_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="max_rows_per_request"):
        ServingSettings(max_rows_per_request=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA execution provider in this onnxruntime")
def test_model_runs_on_cuda_and_answers_like_cpu(served_models: dict[str, Any]) -> None:
    gpu = DataPlane.load(
        ServingSettings(models=["churn"], providers=[CUDA, CPU], require_gpu=True)
    ).get("churn")
    assert gpu.runtime.providers.provider == CUDA
    assert gpu.batcher.inline_max == 0  # every call on the model's thread
    meta = gpu.metadata
    assert gpu.runtime.providers.cpu_nodes == (meta.onnx_nodes or {}).get("ai.onnx.ml", 0)
    columns = gpu.runtime.example_columns(rows=8)
    on_gpu = gpu.runtime.run(columns)
    cpu = Predictor.from_store("churn", providers=[CPU])
    on_cpu = cpu.runtime.run(columns)
    assert on_gpu["label"].tolist() == on_cpu["label"].tolist()
    np.testing.assert_allclose(on_gpu["probabilities"], on_cpu["probabilities"], atol=1e-5)
