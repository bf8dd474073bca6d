"""The BentoML access log and request tracing are settings (both off by default), and the
supervisor process stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import kiln_process, kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("access_log", [None, "true", "false"])
def test_access_log_setting(
    served_models: dict[str, Any], tmp_path: Any, access_log: str | None
) -> None:
    log = tmp_path / "server.log"
    settings = (
        {}
        if access_log is None
        else {"KILN_SERVE_ACCESS_LOG": access_log, "KILN_SERVE_TRACE_INFERENCE": access_log}
    )
    with kiln_server(served_models, log, **settings) as url:
        for _ in range(3):
            response = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
            assert response.status_code == 200
    logged = log.read_text().count("path=/v1/models/churn/predict")
    assert logged == (3 if access_log == "true" else 0)


def _mapped(pid: int) -> set[str]:
    """The file names of the shared objects a process has mapped (its C extensions)."""
    maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8").splitlines()
    return {line.rsplit("/", 1)[-1].strip() for line in maps if ".so" in line}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_the_supervisor_loads_no_numpy_and_no_onnx_runtime(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    # `bentoml serve` imports the service in its supervisor too, which only needs its config
    # (service/bento.py): there the HTTP app, numpy and ONNX Runtime stay unloaded (20 MB).
    with kiln_process(served_models, tmp_path / "server.log") as (url, process):
        assert httpx.get(f"{url}/readyz").status_code == 200
        supervisor = _mapped(process.pid)
        workers = [int(pid) for pid in Path(f"/proc/{process.pid}/task").glob("*/children")
                   for pid in pid.read_text().split()]  # fmt: skip
        worker = set().union(*(_mapped(pid) for pid in workers))
    heavy = ("_multiarray_umath", "onnxruntime_pybind11_state")
    assert all(any(name.startswith(h) for name in worker) for h in heavy)  # the check sees them
    assert not [name for name in supervisor if name.startswith(heavy)]
