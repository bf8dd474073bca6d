"""Serving settings: every KILN_SERVE_* variable is a documented field, a bad value or an
unknown name stops start-up with one line naming it, and nothing else in service/ reads the
environment."""

from __future__ import annotations

import ast
import os

import pytest

from kiln.artifact import CheckMode
from kiln.errors import KilnError, SettingsError
from service.settings import ENV_PREFIX, ServingSettings, env_name, load_settings
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No KILN_SERVE_* variable from the shell that runs the tests."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_every_setting_is_documented() -> None:
    for name, field in ServingSettings.model_fields.items():
        assert field.description and len(field.description) > 20, name


def test_the_variables_bentoml_reads_are_settings_with_their_defaults() -> None:
    settings = load_settings()
    assert settings.workers == 1 and settings.timeout == 30.0
    assert settings.max_concurrency is None
    assert settings.access_log is False and settings.trace_inference is False
    assert settings.event_loop == "asyncio"


def test_values_are_read_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KILN_SERVE_TIMEOUT", "12.5")
    clean_env.setenv("KILN_SERVE_MAX_CONCURRENCY", "48")
    clean_env.setenv("KILN_SERVE_WORKERS", "3")
    clean_env.setenv("KILN_SERVE_ACCESS_LOG", "yes")
    clean_env.setenv("KILN_SERVE_TRACE_INFERENCE", "1")
    clean_env.setenv("KILN_SERVE_EVENT_LOOP", "uvloop")
    clean_env.setenv("kiln_serve_max_queue_rows", "7")  # any case, as pydantic-settings reads
    settings = load_settings()
    assert (settings.timeout, settings.max_concurrency, settings.workers) == (12.5, 48, 3)
    assert settings.access_log and settings.trace_inference
    assert settings.event_loop == "uvloop" and settings.max_queue_rows == 7


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KILN_SERVE_MAX_CONCURRENCY", "")  # `${VAR:-}` in a compose file
    clean_env.setenv("KILN_SERVE_MODELS", "")
    settings = load_settings()
    assert settings.max_concurrency is None and settings.models == []


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("KILN_SERVE_TIMEOUT", "30s", "KILN_SERVE_TIMEOUT='30s': expected a number of seconds"),
        ("KILN_SERVE_TIMEOUT", "0", "KILN_SERVE_TIMEOUT='0': expected a number of seconds > 0"),
        ("KILN_SERVE_WORKERS", "two", "KILN_SERVE_WORKERS='two': expected a whole number"),
        ("KILN_SERVE_WORKERS", "0", "KILN_SERVE_WORKERS='0': expected a whole number >= 1"),
        (
            "KILN_SERVE_MAX_CONCURRENCY",
            "1.5",
            "KILN_SERVE_MAX_CONCURRENCY='1.5': expected a whole number",
        ),
        (
            "KILN_SERVE_EVENT_LOOP",
            "trio",
            "KILN_SERVE_EVENT_LOOP='trio': expected 'asyncio' or 'uvloop'",
        ),
        ("KILN_SERVE_ACCESS_LOG", "maybe", "KILN_SERVE_ACCESS_LOG='maybe': expected true or false"),
        (
            "KILN_SERVE_MAX_BODY_BYTES",
            "12",
            "KILN_SERVE_MAX_BODY_BYTES='12': expected a whole number of bytes >= 1024",
        ),
        (
            "KILN_SERVE_MODELS",
            "churn",
            'KILN_SERVE_MODELS=\'churn\': expected a JSON list, e.g. ["churn", "wine:3"] '
            "(not valid JSON: Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "KILN_SERVE_BATCH",
            '{"max_wait_ms": 5000}',
            "KILN_SERVE_BATCH='{\"max_wait_ms\": 5000}': max_wait_ms: expected a number of "
            "milliseconds <= 1000",
        ),
        (
            "KILN_SERVE_BATCH_OVERRIDES",
            '{"churn": {"max_rows": 64}}',
            'KILN_SERVE_BATCH_OVERRIDES=\'{"churn": {"max_rows": 64}}\': churn.max_rows: not a '
            "known key (known: max_batch_rows, max_wait_ms, enabled, inline_max_ms)",
        ),
        (
            "KILN_SERVE_UNKNOWN_FEATURES",
            "drop",
            "KILN_SERVE_UNKNOWN_FEATURES='drop': expected 'reject' or 'ignore'",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "block",
            "KILN_SERVE_INPUT_CHECKS='block': 'block' is not an input-check mode (use accept, "
            "warn, reject, or off)",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "churn=Reject",
            "KILN_SERVE_INPUT_CHECKS='churn=Reject': 'Reject' is not an input-check mode (use "
            "accept, warn, reject, or off)",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "=reject",
            "KILN_SERVE_INPUT_CHECKS='=reject': '=reject' names no model: write NAME=MODE, e.g. "
            "churn=reject",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "churn=reject,,wine=warn",
            "KILN_SERVE_INPUT_CHECKS='churn=reject,,wine=warn': an empty entry between commas",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "churn=reject,churn=warn",
            "KILN_SERVE_INPUT_CHECKS='churn=reject,churn=warn': model 'churn' is set twice",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            "warn,reject",
            "KILN_SERVE_INPUT_CHECKS='warn,reject': the mode of every model is set twice",
        ),
        (
            "KILN_SERVE_INPUT_CHECKS",
            '{"churn": 3}',
            "KILN_SERVE_INPUT_CHECKS='{\"churn\": 3}': churn: expected 'accept', 'warn', "
            "'reject' or 'off'",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_expectation(
    clean_env: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    assert problems(clean_env, **{name: value}) == [line]


@pytest.mark.parametrize(
    ("value", "churn", "wine"),
    [
        ("", None, None),  # unset: each model its own default (kiln.json)
        ("reject", CheckMode.reject, CheckMode.reject),
        ("churn=reject", CheckMode.reject, None),
        (" churn = reject , wine=accept ", CheckMode.reject, CheckMode.accept),
        ("warn,churn=reject", CheckMode.reject, CheckMode.warn),
        ('{"churn": "accept", "*": "reject"}', CheckMode.accept, CheckMode.reject),
        ("off,churn=warn", CheckMode.warn, "off"),
    ],
)
def test_input_checks_for_every_model_or_per_model(
    clean_env: pytest.MonkeyPatch, value: str, churn: CheckMode | None, wine: CheckMode | None
) -> None:
    clean_env.setenv("KILN_SERVE_INPUT_CHECKS", value)
    settings = load_settings()
    assert settings.input_checks_for("churn") == churn
    assert settings.input_checks_for("wine") == wine


def test_a_misspelt_name_is_refused_with_the_closest_setting(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert problems(clean_env, KILN_SERVE_TIMOUT="30") == [
        "unknown setting KILN_SERVE_TIMOUT (did you mean KILN_SERVE_TIMEOUT?)"
    ]
    clean_env.delenv("KILN_SERVE_TIMOUT")
    assert problems(clean_env, kiln_serve_max_concurency="4") == [
        "unknown setting kiln_serve_max_concurency (did you mean KILN_SERVE_MAX_CONCURRENCY?)"
    ]


def test_a_name_like_no_setting_is_refused_too(clean_env: pytest.MonkeyPatch) -> None:
    assert problems(clean_env, KILN_SERVE_COLOUR="blue") == [
        "unknown setting KILN_SERVE_COLOUR (the settings are listed in service/settings.py)"
    ]


def test_several_problems_are_one_line_each(clean_env: pytest.MonkeyPatch) -> None:
    found = problems(
        clean_env, KILN_SERVE_TIMOUT="30", KILN_SERVE_WORKERS="x", KILN_SERVE_TIMEOUT="-1"
    )
    assert found == [
        "unknown setting KILN_SERVE_TIMOUT (did you mean KILN_SERVE_TIMEOUT?)",
        "KILN_SERVE_WORKERS='x': expected a whole number",
        "KILN_SERVE_TIMEOUT='-1': expected a number of seconds > 0",
    ]


def test_a_secret_value_is_never_shown(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = problems(clean_env, KILN_SERVE_API_KEYS='["s3cret-key"')
    assert "s3cret" not in line
    assert line.startswith("KILN_SERVE_API_KEYS=<hidden>: not a valid JSON list")


def test_a_long_value_is_shortened(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = problems(clean_env, KILN_SERVE_TIMEOUT="9" * 500 + "s")
    assert len(line) < 160 and "..." in line


def test_settings_error_is_a_kiln_error_with_a_usage_exit_code() -> None:
    error = SettingsError(["KILN_SERVE_X='1': expected y"])
    assert isinstance(error, KilnError) and error.exit_code == 2
    assert env_name("max_concurrency") == "KILN_SERVE_MAX_CONCURRENCY"


# -- Nothing in service/ but the settings module reads the environment ----------------------

_ENVIRONMENT = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


def environment_reads(source: str) -> list[int]:
    """Lines of ``source`` that touch the process environment through ``os``."""
    tree = ast.parse(source)
    modules = {"os"}  # names bound to the os module (``import os as system``)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(a.name in _ENVIRONMENT for a in node.names):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_check_sees_every_way_of_reading_the_environment() -> None:
    source = (
        "import os\nimport os as system\nfrom os import getenv\n"
        "a = os.environ['X']\nb = system.getenv('Y')\nc = os.path.join('a')\n"
    )
    assert environment_reads(source) == [3, 4, 5]


def test_only_the_settings_module_reads_the_environment() -> None:
    service = REPO / "service"
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in sorted(service.rglob("*.py"))
        if path != service / "settings.py"
        and (lines := environment_reads(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"read settings through service/settings.py instead: {offenders}"
    assert environment_reads((service / "settings.py").read_text(encoding="utf-8"))
