"""service/instruments.py: bounded endpoint labels, the space guard, reserved metric files."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from service import instruments
from service.instruments import OTHER, Routes, SpaceGuard, endpoint_label

PAD = "x" * 100  # keys as long as prometheus_client's (a JSON of name and labels)
TEMPLATES = [
    "/livez",
    "/v1/models",
    "/v1/models/{name}",
    "/v1/models/{name}/predict",
    "/v2/models/{name}/versions/{version}/infer",
    "/try/{name}",
    "/static_content/{path:path}",
]


def _versions(name: str) -> str | None:
    return {"wine": "3", "churn": ""}.get(name)  # churn failed to load


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/livez", "/livez"),
        ("/v1/models", "/v1/models"),
        ("/v1/models/wine/predict", "/v1/models/wine/predict"),
        ("/v1/models/churn/predict", "/v1/models/churn/predict"),
        ("/v1/models/r0a1b2c3/predict", "/v1/models/_unknown/predict"),
        ("/v1/models/wine", "/v1/models/wine"),
        ("/v2/models/wine/versions/3/infer", "/v2/models/wine/versions/3/infer"),
        ("/v2/models/wine/versions/9/infer", "/v2/models/wine/versions/_unknown/infer"),
        ("/v2/models/churn/versions/3/infer", "/v2/models/churn/versions/_unknown/infer"),
        ("/v2/models/x/versions/3/infer", "/v2/models/_unknown/versions/_unknown/infer"),
        ("/try/try.css", "/try/{name}"),
        ("/static_content/a/b.js", "/static_content/{path}"),
        ("/v1/models/", OTHER),
        ("/r0a1b2c3", OTHER),
        ("/v1/models/wine/predict/more", OTHER),
    ],
)
def test_labels_come_from_the_routes_and_served_models(path: str, label: str) -> None:
    assert endpoint_label(path, Routes(TEMPLATES), _versions) == label


def test_without_a_data_plane_no_name_is_known() -> None:
    assert endpoint_label("/v1/models/wine/predict", Routes(TEMPLATES), None) == (
        "/v1/models/_unknown/predict"
    )


def test_routes_are_read_from_the_app_mounts_and_included_routers() -> None:
    from fastapi import APIRouter

    api = FastAPI()
    router = APIRouter()

    @router.get("/try/{name}")
    async def asset(name: str) -> str:
        return name

    @api.post("/v1/models/{name}/predict")
    async def predict(name: str) -> str:
        return name

    api.include_router(router)
    outer = FastAPI(routes=[Mount("/assets", StaticFiles(directory=Path(__file__).parent))])
    outer.router.routes.append(Mount("/", api))
    routes = Routes.of(outer)
    assert endpoint_label("/try/x.js", routes, None) == "/try/{name}"
    assert endpoint_label("/assets/a.css", routes, None) == "/assets/{path}"
    assert endpoint_label("/v1/models/wine/predict", routes, _versions) == (
        "/v1/models/wine/predict"
    )


def test_the_guard_names_a_low_directory_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = SpaceGuard(str(tmp_path), min_free=2**60)
    plane = SimpleNamespace(served=SimpleNamespace(problems={}))
    with caplog.at_level(logging.INFO, logger="kiln"):
        for _ in range(3):
            guard.check()
            guard.apply(plane)
    assert "KILN_SERVE_METRICS_MIN_FREE_BYTES" in plane.served.problems["metrics"]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    guard.min_free = 1
    guard.check()
    guard.apply(plane)
    assert plane.served.problems == {}
    assert SpaceGuard(str(tmp_path), min_free=0).check() is None


@pytest.fixture
def reserved(monkeypatch: pytest.MonkeyPatch) -> Any:
    from prometheus_client import mmap_dict

    monkeypatch.setattr(instruments.FILES, "refused", None)
    return instruments._reserved_class(mmap_dict.MmapedDict)


def test_a_reserved_file_holds_its_values(reserved: Any, tmp_path: Path) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    store = reserved(str(tmp_path / "counter_1.db"))
    for i in range(2000):  # enough to grow the file past its first 64 KiB
        store.write_value(f"key-{i}-{PAD}", float(i), 0.0)
    store.close()
    assert (tmp_path / "counter_1.db").stat().st_size > 1 << 16
    values = {
        k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_1.db"))
    }
    assert values[f"key-1999-{PAD}"] == 1999.0 and len(values) == 2000
    assert instruments.FILES.refused is None


def test_no_space_keeps_values_in_memory(
    reserved: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = reserved(str(tmp_path / "histogram_1.db"))
    store.write_value("first", 1.0, 0.0)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    for i in range(2000):  # growth refused: the values stay in memory, nothing raises
        store.write_value(f"key-{i}-{PAD}", float(i), 0.0)
    assert store.read_value(f"key-1999-{PAD}") == (1999.0, 0.0)
    assert store.read_value("first") == (1.0, 0.0)
    assert "is full" in (instruments.FILES.refused or "")
    fresh = reserved(str(tmp_path / "gauge_min_1.db"))  # a new file: none, and no empty file
    fresh.write_value("k", 2.0, 0.0)
    assert fresh.read_value("k") == (2.0, 0.0)
    assert not (tmp_path / "gauge_min_1.db").exists()
    store.close()
