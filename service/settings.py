"""Serving settings: one object, read from ``KILN_SERVE_*`` environment variables.

Every setting is a field of :class:`ServingSettings`, its environment variable the field's
name in capitals after ``KILN_SERVE_`` (``timeout``: ``KILN_SERVE_TIMEOUT``); lists and
objects are JSON. An empty variable counts as unset. :func:`load_settings` reads them when
the service starts: a bad value, or a ``KILN_SERVE_*`` name that is no setting (a typo would
otherwise be ignored), stops start-up with one line per variable, e.g.::

    KILN_SERVE_TIMEOUT='30s': expected a number of seconds
    unknown setting KILN_SERVE_TIMOUT (did you mean KILN_SERVE_TIMEOUT?)

This module is the only one in ``service/`` that looks at ``os.environ`` (a test checks).
The model store is BentoML's own ``BENTOML_HOME``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

import pydantic_settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kiln.artifact import CheckMode, parse_mode
from kiln.errors import SettingsError

__all__ = [
    "ALL_MODELS",
    "CHECKS_OFF",
    "ENV_PREFIX",
    "BatchLimits",
    "ServingSettings",
    "env_name",
    "load_settings",
]

ENV_PREFIX = "KILN_SERVE_"
ALL_MODELS = "*"
CHECKS_OFF: Final = "off"
"""An input-check mode of the service alone: no checks, no counters (a benchmark's baseline,
or a model whose inputs are known to drift on purpose)."""
"""The key of ``input_checks`` that sets every model not named."""


class Unit:
    """Field metadata: the unit of a number setting, named in error messages."""

    def __init__(self, name: str) -> None:
        self.name = name


Seconds = Unit("seconds")
Milliseconds = Unit("milliseconds")
Bytes = Unit("bytes")


class BatchLimits(BaseModel):
    """Adaptive batching limits of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_rows: int = Field(default=1024, ge=1)
    """Most rows one ONNX Runtime call takes. Larger requests are split, never merged."""
    # 1,024 rather than 512: each call pays the hand-off to the model's thread and back, and a
    # split request's chunks run one after another, so a 1,000-row request split in two
    # answered 1.4x slower (bench/RESULTS.md). A larger default would hold small requests
    # longer behind a bulk call of a heavy model (the benchmark's MLP: 318 ms for 1,024 rows).

    max_wait_ms: Annotated[float, Milliseconds] = Field(default=1.0, ge=0, le=1000)
    """How long the first request of a batch may wait for others to join it."""

    enabled: bool = True
    """False: never merge requests; each is its own call (larger ones still split)."""

    inline_max_ms: Annotated[float, Milliseconds] = Field(default=1.0, ge=0, le=1000)
    """A call expected to take at most this long (the model's recent calls, CPU time) runs
    on the event loop without the hand-off to the model's thread (0: never)."""
    # 1 ms, measured side by side (docs/benchmarks.md): 1,000-row calls of the logistic
    # regression (about 0.3 ms) run on the loop, the forest's (2.4 ms) and the MLP's do not.


class ServingSettings(BaseSettings):
    """Every serving setting; build it with :func:`load_settings`, which explains bad values."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    models: list[str] = Field(default_factory=list, examples=[["churn", "wine:3"]])
    """Serve exactly these (`NAME` or `NAME:VERSION`, JSON list). Empty: every model in the
    store, at its production version (the promoted one, else the newest that passed its
    quality gate; kiln/resolve.py). A rejected version is served only when pinned."""

    providers: list[str] | None = Field(
        default=None, examples=[["CUDAExecutionProvider", "CPUExecutionProvider"]]
    )
    """ONNX Runtime execution providers in order of preference, e.g.
    `["CUDAExecutionProvider", "CPUExecutionProvider"]`. Default: CUDA then CPU where
    onnxruntime-gpu is installed, else CPU."""

    require_gpu: bool = False
    """Refuse to start unless every model runs on the CUDA provider."""

    intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime threads per model call (0: one per core). One suits many workers."""

    batch: BatchLimits = Field(
        default_factory=BatchLimits, examples=[{"max_batch_rows": 1024, "max_wait_ms": 1}]
    )
    """Default batching limits (JSON), e.g. `{"max_batch_rows": 1024, "max_wait_ms": 1}`."""

    batch_overrides: dict[str, BatchLimits] = Field(
        default_factory=dict, examples=[{"churn": {"max_batch_rows": 64}}]
    )
    """Per-model batching limits (JSON), e.g. `{"churn": {"max_batch_rows": 64}}`."""

    max_queue_rows: int = Field(default=20_000, ge=1)
    """Rows waiting for a model beyond which new requests get 503 with Retry-After."""

    admission_wait: Annotated[float, Seconds] = Field(default=0.25, ge=0, le=10)
    """How long a request may wait, before its body is read, for room in a full queue; then
    503. Clients that retry at once turn each refusal into another request: on the 2-core
    bench machine 16 such clients of 1,000-row bodies at a 4,000-row queue got 500 refusals a
    second, whose bodies and answers took the model's CPU (0.60 of capacity served, against
    0.99 with this wait; bench/overload.py). 0: refuse at once."""

    max_rows_per_request: int = Field(default=10_000, ge=1)
    """Most rows (instances) one request may carry; more is answered 413."""

    max_body_bytes: Annotated[int, Bytes] = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest request body accepted (after gzip is inflated); larger is answered 413.
    16 MiB holds 10,000 rows of 30 features twice over, and orjson parses it in one call
    that holds the event loop at most about 30 ms here (32 MiB of escaped text: 90 ms)."""

    # Limits before the body, enforced in the HTTP protocol (service/httpserver.py).

    max_header_bytes: Annotated[int, Bytes] = Field(default=64 * 1024, ge=1024)
    """Largest request line and headers together; larger is answered 431 and the connection
    closed."""

    max_headers: int = Field(default=100, ge=1)
    """Most headers one request may carry; more is answered 431 and the connection closed."""

    header_timeout: Annotated[float, Seconds] = Field(default=10.0, gt=0)
    """Seconds from a connection opening, or from the end of its previous response, until the
    request's headers must be complete; past it the connection is closed (after a 408 when
    part of a request came). A connection that never sends a byte is closed by it too."""

    keep_alive_timeout: Annotated[float, Seconds] = Field(default=5.0, gt=0)
    """Seconds an idle keep-alive connection stays open after a response (or
    `header_timeout`, if that is shorter). Replaces BentoML's fixed 5 s."""

    max_connections: int = Field(default=2000, ge=1)
    """Open connections per worker. Past it a new connection closes the one that has waited
    longest for its request's headers (idle or slow); when every connection holds a request,
    the new one is answered 503 with Retry-After and closed."""

    poll_seconds: Annotated[float, Seconds] = Field(default=30.0, ge=0)
    """How often to look for a newly promoted production version and swap it in without
    dropping requests (0: never; models pinned as NAME:VERSION never change)."""

    unknown_features: Literal["reject", "ignore"] = "reject"
    """What to do with a feature or input the model does not know: answer 400, or drop it."""

    input_checks: Annotated[dict[str, CheckMode | Literal["off"]], NoDecode] = Field(
        default_factory=dict, examples=["reject", "warn,churn=reject"]
    )
    """What to do with a row unlike the training data (kiln/checks.py): `accept` (count it),
    `warn` (count it and answer with `warnings`), `reject` (count it and answer 422), or
    `off` (no checks and no counters: docs/serving.md has their cost). One
    mode for every model (`reject`), per model (`churn=reject,wine=accept`), or both
    (`warn,churn=reject`), or a JSON object (`{"churn": "reject", "*": "warn"}`). A model
    not named keeps its own default (its spec's `monitoring.input_checks`; `warn` for models
    trained before schema 3). Empty: every model its own default."""

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """API keys, comma-separated (several, for rotation). When any key is set (here or in
    `api_keys_file`), every route but health and metrics needs `Authorization: Bearer <key>`."""

    api_keys_file: Path | None = None
    """A file of API keys, one per line (a mounted Secret); read again when it changes."""

    protect_health: bool = False
    """With API keys set, also require a key on the health and metrics routes (`/livez`,
    `/healthz`, `/readyz`, `/metrics`, `/v2/health/live`, `/v2/health/ready`); by default
    they stay open for probes and Prometheus."""

    # BentoML's own service configuration: service/bento.py passes these to
    # ``@bentoml.service`` (workers, traffic, logging, tracing) and to uvicorn.

    workers: int = Field(default=1, ge=1)
    """Worker processes; each opens every model and serves requests on its own."""

    timeout: Annotated[float, Seconds] = Field(default=30.0, gt=0)
    """Seconds a request may take before it is answered 504. A pod's termination grace
    period must outlast it (deploy/k8s)."""

    max_concurrency: int | None = Field(default=None, ge=1)
    """Requests a worker handles at once; past it a request is answered 503 with
    Retry-After. Health and metrics routes are never limited. Unset: no limit (the batching
    queue, `max_queue_rows`, still sheds load)."""

    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """Port of the Open Inference Protocol over gRPC (service/grpc/), on the HTTP server's
    host, shared by every worker (SO_REUSEPORT); 0: no gRPC server, and grpcio is not even
    imported. Same data plane, limits, API keys and metrics as the REST routes."""

    grpc_reflection: bool = False
    """Serve gRPC server reflection (grpcurl, Postman find the services without the .proto).
    Off by default: it tells anyone who asks what the server holds."""

    grpc_grace_seconds: Annotated[float, Seconds] = Field(default=5.0, ge=0, le=300)
    """At shutdown, how long calls in progress on the gRPC port may still finish; new calls
    are refused at once. A pod's termination grace period must outlast it."""

    access_log: bool = False
    """Log one line per request (BentoML's access log). Off by default: together with
    `trace_inference` it costs about 40% of the throughput (bench/RESULTS.md), and the
    Prometheus metrics count every request anyway."""

    trace_inference: bool = False
    """Make OpenTelemetry spans for the model routes too (`/v1/models...`, `/v2/models...`,
    `/v1/noop`); off, only the other routes are traced."""

    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    """The workers' event loop. uvloop is faster on bulk JSON, but accepts one new
    connection per loop turn, so under a flood of busy connections health probes waited
    seconds to get in; asyncio's loop accepts up to a hundred at a time."""

    metrics_min_free_bytes: Annotated[int, Bytes] = Field(default=16 * 1024 * 1024, ge=0)
    """Free space the Prometheus multiprocess directory (BentoML's, under `BENTOML_HOME`)
    must keep; below it the worker logs an ERROR and `/readyz` answers 503 naming it
    (checked at start and every 5 s; 0: only when a metrics file could not grow)."""

    # Drift over a rolling window (service/drift.py, docs/monitoring.md#drift).

    drift_window: int = Field(default=10_000, ge=0)
    """Rows per model version (per worker) the drift gauges are computed over: the last
    rows answered, as training bins, one byte per feature and row (0: no drift)."""

    drift_interval: Annotated[float, Seconds] = Field(default=5.0, gt=0, le=3600)
    """How often a worker's thread takes the rows queued for the window and updates the PSI
    gauges. Rows arriving faster than a window per interval are not sampled (counted)."""

    drift_min_rows: int = Field(default=1000, ge=1)
    """Rows the window must hold (at most the window) before the PSI gauges are set: PSI
    over a few rows is noise. Rows drawn from churn's own training file, 20 draws: the
    largest feature PSI of 100 rows had a median of 0.17 (up to 0.36), of 1,000 rows 0.016."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):  # a JSON list, like the other list settings
                try:
                    return json.loads(value)
                except ValueError as exc:
                    raise ValueError(f"not a valid JSON list ({exc})") from None
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("input_checks", mode="before")
    @classmethod
    def _parse_checks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):  # a JSON object, like the other object settings
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a valid JSON object ({exc})") from None
            items = list(parsed.items()) if isinstance(parsed, dict) else []
        else:
            items = []
            for part in (p.strip() for p in text.split(",")):
                name, eq, mode = part.rpartition("=")
                if not part:
                    raise ValueError("an empty entry between commas")
                if eq and not name.strip():
                    raise ValueError(f"{part!r} names no model: write NAME=MODE, e.g. churn=reject")
                items.append((name.strip() if eq else ALL_MODELS, mode.strip()))
        modes: dict[str, CheckMode | Literal["off"]] = {}
        for name, mode in items:
            if name in modes:
                what = "the mode of every model" if name == ALL_MODELS else f"model {name!r}"
                raise ValueError(f"{what} is set twice")
            if not isinstance(mode, str):
                raise ValueError(f"{name}: expected 'accept', 'warn', 'reject' or 'off'")
            if mode == CHECKS_OFF:
                modes[name] = CHECKS_OFF
                continue
            try:
                modes[name] = parse_mode(mode)
            except ValueError as exc:
                raise ValueError(f"{exc.args[0].removesuffix(')')}, or {CHECKS_OFF})") from None
        return modes

    def limits_for(self, model: str) -> BatchLimits:
        return self.batch_overrides.get(model, self.batch)

    def input_checks_for(self, model: str) -> CheckMode | Literal["off"] | None:
        """The input-check mode set for ``model`` (or ``off``); None: the model's own."""
        checks = self.input_checks
        return checks.get(model, checks.get(ALL_MODELS)) if checks else None


def env_name(field: str) -> str:
    """The environment variable of a setting: ``timeout`` -> ``KILN_SERVE_TIMEOUT``."""
    return ENV_PREFIX + field.upper()


def load_settings() -> ServingSettings:
    """The settings from the environment, checked.

    Raises :class:`kiln.errors.SettingsError` with one line per bad or unknown
    ``KILN_SERVE_*`` variable (pydantic-settings itself ignores an unknown prefixed name in
    the environment; here it is an error, as ``extra="forbid"`` makes it for arguments).
    """
    # pydantic-settings matches names case-insensitively (case_sensitive is off): so do we.
    ours = sorted(name for name in os.environ if name.upper().startswith(ENV_PREFIX))
    environ = {name.upper(): os.environ[name] for name in ours}
    problems = [_unknown(name) for name in ours if _field_of(name) is None]
    settings: ServingSettings | None = None
    try:
        settings = ServingSettings()
    except ValidationError as exc:
        problems += [_invalid(error, environ) for error in exc.errors()]
    except pydantic_settings.SettingsError as exc:  # a list or object that is not JSON
        problems.append(_not_json(exc, environ))
    if problems or settings is None:
        raise SettingsError(list(dict.fromkeys(problems)))  # one line each, in order
    return settings


# -- Messages ------------------------------------------------------------------------------

_LONGEST_VALUE = 80  # characters of a value quoted in a message
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}
_NUMBER_ERRORS = frozenset({"float_parsing", "float_type", "finite_number"})
_INTEGER_ERRORS = frozenset({"int_parsing", "int_type", "int_from_float", "int_parsing_size"})


def _field_of(name: str) -> str | None:
    """The field a ``KILN_SERVE_*`` name sets, if any (in any case, as pydantic-settings)."""
    field = name[len(ENV_PREFIX) :].lower()
    return field if field in ServingSettings.model_fields else None


def _unknown(name: str) -> str:
    known = [env_name(field) for field in ServingSettings.model_fields]
    suffixes = {env[len(ENV_PREFIX) :]: env for env in known}
    close = difflib.get_close_matches(name[len(ENV_PREFIX) :].upper(), list(suffixes), n=1)
    if close:
        return f"unknown setting {name} (did you mean {suffixes[close[0]]}?)"
    return f"unknown setting {name} (the settings are listed in service/settings.py)"


def _shown(field: str, environ: Mapping[str, str], fallback: Any) -> str:
    """The value as the user set it, quoted and shortened; a secret is never shown."""
    if _is_secret(ServingSettings.model_fields[field].annotation):
        return "<hidden>"
    value = environ.get(env_name(field), fallback)
    text = repr(value)
    return text if len(text) <= _LONGEST_VALUE else text[: _LONGEST_VALUE - 4] + "...'"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


def _field_at(loc: tuple[int | str, ...]) -> FieldInfo:
    """The field an error's location ends at (a BatchLimits field inside ``batch``)."""
    info = ServingSettings.model_fields[str(loc[0])]
    for part in loc[1:]:
        inner = next(_models_in(info.annotation), None)
        if inner is not None and isinstance(part, str) and part in inner.model_fields:
            info = inner.model_fields[part]
    return info


def _noun(info: FieldInfo) -> str:
    unit = next((m.name for m in info.metadata if isinstance(m, Unit)), None)
    whole = int in (info.annotation, *get_args(info.annotation))
    noun = "a whole number" if whole else "a number"
    return f"{noun} of {unit}" if unit else noun


def _json_kind(info: FieldInfo) -> str:
    example = f", e.g. {json.dumps(info.examples[0])}" if info.examples else ""
    types = (info.annotation, *get_args(info.annotation))
    listed = any(get_origin(t) is list for t in types)
    return ("a JSON list" if listed else "a JSON object") + example


def _expected(error: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    """What the value at ``loc`` should have been."""
    info = _field_at(loc)
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _NUMBER_ERRORS or kind in _INTEGER_ERRORS:
        return f"expected {_noun(info)}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"expected {_noun(info)} {sign} {ctx[key]:g}"
    if kind == "bool_parsing":
        return "expected true or false"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
        return f"expected {_json_kind(info)}"
    if kind == "extra_forbidden":  # ``info`` is the object's field: name its keys
        inner = next(_models_in(info.annotation), None)
        return "not a known key" + (f" (known: {', '.join(inner.model_fields)})" if inner else "")
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    return "expected " + error["msg"].removeprefix("Input should be ")


def _invalid(error: ErrorDetails, environ: Mapping[str, str]) -> str:
    loc = error["loc"]
    field = str(loc[0])
    if field not in ServingSettings.model_fields:  # only arguments can name other fields
        return f"{field}: {error['msg']}"
    inside = ".".join(str(part) for part in loc[1:])  # a key inside a JSON object
    shown = _shown(field, environ, error["input"])
    return f"{env_name(field)}={shown}: {inside + ': ' if inside else ''}{_expected(error, loc)}"


def _not_json(exc: pydantic_settings.SettingsError, environ: Mapping[str, str]) -> str:
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None or found.group(1) not in ServingSettings.model_fields:
        return str(exc)
    field = found.group(1)
    reason = f" (not valid JSON: {exc.__cause__})" if exc.__cause__ else ""
    info = ServingSettings.model_fields[field]
    return f"{env_name(field)}={_shown(field, environ, None)}: expected {_json_kind(info)}{reason}"
