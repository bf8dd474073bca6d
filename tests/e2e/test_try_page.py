"""The try-it page (`GET /try`) in a real browser against the real server.

`bentoml serve` from the repository root (as in test_server.py), and Debian's Chromium
(`/usr/bin/chromium`, installed by .ci/run) driven by Playwright: pick a model, fill the
form, submit, and see the answer the JSON API gives for the same record; see an API error in
the page; and check that the page loads nothing from anywhere else and logs no error.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.conftest import API_KEYS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What the test types into the churn form; None: left empty (or "(missing)" for a category).
CHURN_FORM: dict[str, Any] = {
    "tenure_months": 3,
    "monthly_charge": 70.5,
    "data_gb": None,
    "support_calls": 4,
    "age": 30,
    "plan": "fiber",
    "contract": "monthly",
    "region": "east",
    "payment_method": None,
}
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright is not installed: pip install -r requirements.lock",
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Session:
    """One fresh browser context on the page, with what it requested and logged."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme != "data"
            and f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != self.origin
        ]


@pytest.fixture
def session(browser: Any, server: str) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    opened = Session(page, server)
    context.on("request", lambda request: opened.requests.append(request.url))

    def console(message: Any) -> None:
        if message.type == "error":
            opened.console_errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: opened.console_errors.append(f"uncaught: {error}"))
    page.goto(f"{server}/try")
    try:
        yield opened
    finally:
        context.close()


def _choose(page: Any, model: str) -> None:
    page.get_by_label("Model", exact=True).select_option(model)
    page.locator("#form").wait_for(state="visible")


def _fill(page: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        control = page.locator(f'#fields [name="{name}"]')
        if control.evaluate("c => c.tagName") == "SELECT":
            control.select_option(label="(missing)" if value is None else str(value))
        else:
            control.fill("" if value is None else str(value))


def _predict(server: str, model: str, record: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}/v1/models/{model}/predict", json={"instances": [record]})


def _png_pixels(png: bytes) -> np.ndarray:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) into a (height, width, n) array."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, bytearray(), b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        chunk = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        if chunk == b"IHDR":
            header = data
        elif chunk == b"IDAT":
            chunks += data
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour in (2, 6), (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(bytes(chunks)), np.uint8).reshape(height, stride + 1)
    pixels = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along the row, per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + previous) % 256
        else:  # Average or Paeth: sequential along the row
            values, up = line.tolist(), previous.tolist()
            out = [0] * stride
            for x in range(stride):
                left = out[x - channels] if x >= channels else 0
                if kind == 3:
                    out[x] = (values[x] + (left + up[x]) // 2) % 256
                else:
                    corner = up[x - channels] if x >= channels else 0
                    estimate = left + up[x] - corner
                    da, db, dc = abs(estimate - left), abs(estimate - up[x]), abs(estimate - corner)
                    nearest = left if da <= db and da <= dc else up[x] if db <= dc else corner
                    out[x] = (values[x] + nearest) % 256
            row = np.array(out, np.int32)
        pixels[y] = row
        previous = row
    return pixels.reshape(height, width, channels).astype(np.uint8)


# -- the route, through the real server --------------------------------------------------


def test_the_page_and_its_files_are_served_with_types_and_caching(server: str) -> None:
    page = httpx.get(f"{server}/try")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<title>Try a model" in page.text
    again = httpx.get(f"{server}/try", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert httpx.head(f"{server}/try").status_code == 200
    for name, media_type in [("try.js", "text/javascript"), ("try.css", "text/css")]:
        asset = httpx.get(f"{server}/try/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"] == f"{media_type}; charset=utf-8"
        assert asset.headers["cache-control"] == "no-cache"
    missing = httpx.get(f"{server}/try/../service/ui.py")
    assert missing.status_code == 404
    missing = httpx.get(f"{server}/try/ui.py")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no such file: /try/ui.py"}
    # BentoML keeps its own pages: the API documentation at / and /docs.json, without /try.
    index = httpx.get(f"{server}/")
    assert index.status_code == 200 and "swagger" in index.text.lower()
    paths = httpx.get(f"{server}/docs.json").json()["paths"]
    assert "/v1/models/{name}/predict" in paths
    assert not any(path.startswith("/try") for path in paths)


# -- the page, in Chromium -----------------------------------------------------------------


def test_churn_form_submits_and_shows_the_api_answer(
    session: Session, server: str, tmp_path: Path
) -> None:
    page = session.page
    page.locator("#model:enabled").wait_for()  # the list has loaded
    listed = page.locator("#model option").evaluate_all("options => options.map(o => o.value)")
    assert listed == ["", "churn", "wine", "diabetes"]
    shown = page.locator("#model option").all_inner_texts()
    assert shown[1:] == [
        "churn — picks a class",
        "wine — picks a class",
        "diabetes — predicts a number",
    ]

    _choose(page, "churn")
    described = httpx.get(f"{server}/v1/models/churn").json()
    controls = page.locator("#fields [data-kind]")
    assert controls.count() == len(described["features"])
    for feature in described["features"]:
        control = page.locator(f'#fields [name="{feature["name"]}"]')
        # Every control has a label of its own (<label for>), found by its text.
        label = control.evaluate("c => c.labels.length === 1 && c.labels[0].textContent")
        assert page.get_by_label(label, exact=True).get_attribute("name") == feature["name"]
        if feature["kind"] == "numeric":
            assert control.get_attribute("type") == "number"
            assert control.get_attribute("step") == "any"
            assert control.input_value() == ""
            assert control.get_attribute("placeholder")
        else:
            shown = control.locator("option").all_inner_texts()
            known = [c for c in feature["categories"] if c != ""]
            assert shown == ["(missing)", *known]
    assert page.locator('#fields [name="plan"] option', has_text="(missing)").count() == 1

    _fill(page, CHURN_FORM)
    page.get_by_role("button", name="Predict").click()
    page.locator("#result").wait_for(state="visible")

    expected = _predict(server, "churn", CHURN_FORM)
    assert expected.status_code == 200
    answer = expected.json()
    prediction = page.locator("#prediction")
    assert prediction.inner_text() == answer["predictions"][0]
    assert json.loads(prediction.get_attribute("data-value")) == answer["predictions"][0]
    bars = page.locator("#probabilities li")
    shown = {
        bars.nth(i).get_attribute("data-class"): (
            float(bars.nth(i).get_attribute("data-probability")),
            bars.nth(i).locator(".value").inner_text(),
        )
        for i in range(bars.count())
    }
    assert list(shown) == described["classes"]
    for name, probability in answer["probabilities"][0].items():
        value, text = shown[name]
        assert value == probability  # the page shows the API's own numbers
        assert text.endswith("%") and abs(float(text[:-1]) - 100 * probability) <= 0.051
    assert (
        page.locator("#probabilities li.chosen").get_attribute("data-class")
        == (answer["predictions"][0])
    )
    assert page.locator("#error").is_hidden()

    screenshot = page.screenshot(full_page=True)
    (tmp_path / "try-page.png").write_bytes(screenshot)
    pixels = _png_pixels(screenshot)
    assert len(screenshot) > 10_000
    assert pixels.shape[0] >= 900 and pixels.shape[1] == 1100
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"the screenshot is nearly blank: {len(colours)} colours"

    assert session.console_errors == []
    assert session.foreign_requests() == []
    assert {urlsplit(url).path for url in session.requests} >= {
        "/try",
        "/try/try.js",
        "/try/try.css",
        "/v1/models",
        "/v1/models/churn",
        "/v1/models/churn/predict",
    }


def test_regressor_shows_a_number_and_the_keyboard_submits(session: Session, server: str) -> None:
    page = session.page
    _choose(page, "diabetes")
    features = [f["name"] for f in httpx.get(f"{server}/v1/models/diabetes").json()["features"]]
    record: dict[str, float | None] = {
        name: round(0.01 * (i - 4), 3) for i, name in enumerate(features)
    }
    record[features[-1]] = None
    _fill(page, record)
    page.locator(f'#fields [name="{features[0]}"]').press("Enter")  # submits the form
    page.locator("#result").wait_for(state="visible")

    answer = _predict(server, "diabetes", record).json()
    prediction = page.locator("#prediction")
    assert json.loads(prediction.get_attribute("data-value")) == answer["predictions"][0]
    assert float(prediction.inner_text().replace(",", "")) == pytest.approx(
        answer["predictions"][0], abs=0.05
    )
    assert page.locator("#probabilities").count() == 0
    assert "progression" in page.locator("#result").inner_text()

    assert session.console_errors == []
    assert session.foreign_requests() == []


def test_an_api_error_is_shown_in_the_page(session: Session, server: str) -> None:
    page = session.page
    _choose(page, "churn")
    bad = {**CHURN_FORM, "tenure_months": 1e39}  # a number, but not a float32 one
    _fill(page, {**bad, "tenure_months": "1e39"})
    page.get_by_role("button", name="Predict").click()
    error = page.locator("#error")
    error.wait_for(state="visible")

    refused = _predict(server, "churn", bad)
    assert refused.status_code == 400
    message = refused.json()["error"]
    assert "tenure_months" in message
    assert error.get_attribute("role") == "alert"
    assert "error 400" in error.inner_text()
    assert page.locator("#error .error-message").inner_text() == message
    assert page.locator("#result").is_hidden()

    # Corrected, it answers, and the error goes away.
    _fill(page, {"tenure_months": "3"})
    page.get_by_role("button", name="Predict").click()
    page.locator("#result").wait_for(state="visible")
    assert error.is_hidden()

    # The browser itself logs the refused request; nothing else is an error.
    unexpected = [e for e in session.console_errors if "status of 400" not in e]
    assert unexpected == []
    assert len(session.console_errors) == 1
    assert session.foreign_requests() == []


def test_with_api_keys_the_page_asks_for_one_and_then_works(
    browser: Any, keyed_server: tuple[str, Path]
) -> None:
    url, _ = keyed_server
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    sent: list[str | None] = []
    context.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
    )
    try:
        page = context.new_page()
        page.goto(f"{url}/try")  # the page itself is open
        page.locator("#key-form").wait_for(state="visible")  # the API said 401
        assert "error 401" in page.locator("#error").inner_text()
        assert page.locator("#model option").all_inner_texts() == ["No models"]

        page.get_by_label("API key", exact=True).fill("not-the-key")
        page.get_by_role("button", name="Use this key").click()
        page.locator("#key-form").wait_for(state="visible")  # refused again: asked again
        assert "not valid" in page.locator("#error").inner_text()

        page.get_by_label("API key", exact=True).fill(API_KEYS[1])
        page.get_by_role("button", name="Use this key").click()
        page.locator("#model:enabled").wait_for()
        assert page.locator("#key-form").is_hidden() and page.locator("#error").is_hidden()
        _choose(page, "churn")
        _fill(page, CHURN_FORM)
        page.get_by_role("button", name="Predict").click()
        page.locator("#result").wait_for(state="visible")
        assert f"Bearer {API_KEYS[1]}" in sent and None in sent
        headers = {"Authorization": f"Bearer {API_KEYS[1]}"}
        expected = httpx.post(
            f"{url}/v1/models/churn/predict",
            json={"instances": [CHURN_FORM]},
            headers=headers,
        ).json()["predictions"][0]
        assert str(expected) in page.locator("#answer").inner_text()
    finally:
        context.close()
