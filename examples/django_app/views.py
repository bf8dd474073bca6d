"""The views: they only translate HTTP; the Predictor checks the rows and answers.

Each model is loaded once per process, on its first request (:class:`Predictors`), and then
shared by every thread: a ``Predictor`` holds an ONNX Runtime session, which is safe to call
concurrently. Kiln's errors carry the HTTP status to answer with, so every bad request gets
``{"error": message}`` with that status (InvalidInput 400, ModelNotFound 404, ...), never a
500. The routes and their answers are the Flask example's (examples/flask_app/app.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from examples.forms import answer_form, default_value
from kiln import Predictor
from kiln.errors import InvalidInput, KilnError, PayloadTooLarge

NOT_AN_OBJECT = 'send a JSON object: {"instances": [{...}, ...]} or one record'


class Predictors:
    """One :class:`kiln.Predictor` per model reference, loaded on first use, thread-safe."""

    def __init__(self) -> None:
        self._loaded: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def get(self, ref: str) -> Predictor:
        """``ref`` (``NAME``: its production version, or ``NAME:VERSION``), loaded once.

        Raises ModelNotFound for a model that is not in the store; nothing is kept then.
        """
        predictor = self._loaded.get(ref)
        if predictor is None:
            with self._lock:  # concurrent first requests load the model once, not once each
                predictor = self._loaded.get(ref)
                if predictor is None:
                    predictor = self._loaded[ref] = Predictor.from_store(ref)
        return predictor

    def loaded(self) -> dict[str, str]:
        """``{reference: version}`` of the models loaded so far."""
        return {ref: p.version for ref, p in self._loaded.items()}

    def clear(self) -> None:
        """Forget the loaded models: the next request loads them again from the store."""
        with self._lock:
            self._loaded.clear()


PREDICTORS = Predictors()

View = Callable[..., HttpResponse]


def json_errors(view: View) -> View:
    """Answer a KilnError raised by ``view`` with ``{"error": message}`` and its status."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except KilnError as error:
            return JsonResponse({"error": error.message}, status=error.status_code)

    return wrapper


def _records(request: HttpRequest) -> Any:
    """The rows of a JSON body: ``{"instances": [...]}``, or one record on its own."""
    content_type = request.content_type or ""
    is_json = content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )
    try:
        payload = json.loads(request.body) if is_json else None
    except ValueError:  # not JSON, or not UTF-8/16/32
        payload = None
    except RequestDataTooBig:
        raise PayloadTooLarge(
            f"the body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidInput(NOT_AN_OBJECT)
    return payload.get("instances", [payload])


@require_POST
@json_errors
def predict(request: HttpRequest) -> HttpResponse:
    """``POST /predict``: the ``KILN_MODEL`` model's answer, as JSON."""
    predictor = PREDICTORS.get(settings.KILN_MODEL)
    return JsonResponse(predictor.predict(_records(request)))


@require_POST
@json_errors
def predict_model(request: HttpRequest, name: str) -> HttpResponse:
    """``POST /models/<name>/predict``: the same, from any model in the store."""
    predictor = PREDICTORS.get(name)
    return JsonResponse(predictor.predict(_records(request)))


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """``GET /healthz``: the process answers; which models it has loaded so far."""
    return JsonResponse({"status": "ok", "loaded": PREDICTORS.loaded()})


def _page(
    request: HttpRequest, predictor: Predictor, values: dict[str, str], **context: Any
) -> HttpResponse:
    return render(request, "form.html", {"p": predictor, "values": values, **context})


@require_GET
@json_errors
def form(request: HttpRequest) -> HttpResponse:
    """``GET /``: a form for the model's features, filled with typical training values."""
    predictor = PREDICTORS.get(settings.KILN_MODEL)
    values = {f.name: default_value(predictor, f) for f in predictor.metadata.features}
    return _page(request, predictor, values)


@require_POST
@json_errors
def predict_form(request: HttpRequest) -> HttpResponse:
    """``POST /predict-form``: the form's answer in words (a bad value: the message, 400)."""
    predictor = PREDICTORS.get(settings.KILN_MODEL)
    values = {f.name: request.POST.get(f.name, "") for f in predictor.metadata.features}
    result, error, status = answer_form(predictor, values)
    page = _page(request, predictor, values, result=result, error=error)
    page.status_code = status
    return page
