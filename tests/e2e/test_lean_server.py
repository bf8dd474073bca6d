"""The BentoML access log and request tracing are settings (both off by default)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import kiln_server

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
