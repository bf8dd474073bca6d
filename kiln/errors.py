"""The one error hierarchy of Kiln, shared by training, the CLI and serving.

Every error carries the HTTP status a server answers with and builds its own message from its
arguments, so the text a user reads is written in one place. The CLI prints the message and
exits with ``exit_code``; the service turns it into ``{"error": message}`` with ``status_code``.

    KilnError                    500  base; never raised itself
    ├── SpecError                400  the spec file is wrong (names the field)
    ├── SettingsError            500  a setting (environment variable) is wrong or unknown
    ├── DataError                422  a data file is unreadable or does not match the spec
    ├── TrainingError            500  fitting or exporting failed
    │   └── VerificationError    500  ONNX Runtime disagrees with scikit-learn
    ├── RegistrationError        500  writing to the model store failed (nothing was kept)
    ├── ArtifactError            500  a stored model is unreadable or of an unknown schema
    ├── ModelNotFound            404  no such model or version in the store
    ├── InvalidInput             400  a request or record is malformed
    │   ├── PayloadTooLarge      413  a body or a request over its size limit
    │   ├── NonFiniteOutput      422  the model's answer for a row is not a finite number
    │   └── InputRejected        422  a row unlike the training data, under `reject` checks
    ├── ModelNotReady            503  the model is known but not loaded yet
    └── Overloaded               503  the queue is full; retry later
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ArtifactError",
    "DataError",
    "InputRejected",
    "InvalidInput",
    "KilnError",
    "ModelNotFound",
    "ModelNotReady",
    "NonFiniteOutput",
    "Overloaded",
    "PayloadTooLarge",
    "RegistrationError",
    "ServiceUnavailable",
    "SettingsError",
    "SpecError",
    "TrainingError",
    "UnsupportedMediaType",
    "VerificationError",
]


class KilnError(Exception):
    """Base of every error Kiln raises on purpose."""

    status_code: int = 500
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(KilnError):
    """One or more fields of a spec are wrong; each problem names its field."""

    status_code = 400
    exit_code = 2

    def __init__(
        self, problems: Iterable[tuple[str, str]], source: str = "spec", verdict: str = "is invalid"
    ) -> None:
        self.problems = list(problems)
        lines = [f"  {field}: {problem}" for field, problem in self.problems]
        super().__init__(f"{source} {verdict}:\n" + "\n".join(lines))


class SettingsError(KilnError):
    """Settings from the environment are wrong: each problem, one line, names its variable."""

    exit_code = 2

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(KilnError):
    """A data file cannot be read, or its contents do not fit the spec."""

    status_code = 422
    exit_code = 2

    def __init__(self, problem: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {problem}" if source else problem)


class TrainingError(KilnError):
    """Fitting, evaluating or exporting a model failed."""


class VerificationError(TrainingError):
    """The ONNX model does not answer like the scikit-learn pipeline it came from."""

    def __init__(self, name: str, summary: str, worst_rows: str) -> None:
        self.summary = summary
        super().__init__(
            f"{name}: ONNX Runtime disagrees with scikit-learn ({summary}); "
            f"the model was not registered. Worst rows:\n{worst_rows}"
        )


class RegistrationError(KilnError):
    """Writing a model into the store failed; the store was left as it was."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"{name}: registration failed, nothing was written to the store: {cause}")


class ArtifactError(KilnError):
    """A stored model cannot be read: files missing, corrupt, or an unknown schema version."""

    def __init__(self, tag: str, problem: str) -> None:
        self.tag = tag
        super().__init__(f"model {tag}: {problem}")


class ModelNotFound(KilnError):
    """No model or version of that name is in the store."""

    status_code = 404
    exit_code = 3

    def __init__(self, tag: str, known: Iterable[str] = ()) -> None:
        known = sorted(known)
        hint = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"model {tag!r} is not in the store{hint}")


class InvalidInput(KilnError):
    """A request, record or value is malformed."""

    status_code = 400
    exit_code = 2


class UnsupportedMediaType(InvalidInput):
    """A request body of a content type the route does not read."""

    status_code = 415


class ServiceUnavailable(KilnError):
    """The service cannot answer yet (it is still starting)."""

    status_code = 503


class ModelNotReady(KilnError):
    """The model exists but cannot answer yet."""

    status_code = 503

    def __init__(self, name: str, reason: str = "not loaded yet") -> None:
        super().__init__(f"model {name!r} is not ready: {reason}")


class PayloadTooLarge(InvalidInput):
    """A body, or a request's rows, over the configured limit."""

    status_code = 413


class NonFiniteOutput(InvalidInput):
    """The model answered NaN or infinity for some rows (inputs far outside the training data
    overflow float32 inside the model): an error for those rows, never a confident label.

    ``rows`` maps a row (0 = the request's first) to the output that is not finite, as
    ``"probabilities = nan"``; the message names the first row and lists the others.
    """

    status_code = 422

    def __init__(self, rows: dict[int, str], shown: int = 10) -> None:
        self.rows = dict(rows)
        first, *others = sorted(self.rows)
        message = f"row {first}: {self.reason(self.rows[first])}"
        if others:
            listed = ", ".join(map(str, others[:shown]))
            more = f" and {len(others) - shown} more" if len(others) > shown else ""
            message += f" (also row{'s' if len(others) > 1 else ''} {listed}{more})"
        super().__init__(message)

    @staticmethod
    def reason(detail: str) -> str:
        """Why one row has no answer, as every path says it (``kiln predict``'s rejects file
        too); ``detail`` names the output and its value."""
        return (
            f"the model's answer is not a finite number ({detail}); "
            "its inputs are probably far outside the training data"
        )


class InputRejected(InvalidInput):
    """Rows unlike the training data, refused under the ``reject`` input-check mode
    (kiln/checks.py). ``findings`` are the first ones (row, then feature order), ``total``
    how many there were, ``counts`` (feature, reason) -> rows, for the counters."""

    status_code = 422

    def __init__(self, findings: list[Any], total: int, counts: dict[tuple[str, str], int]) -> None:
        self.findings = findings
        self.total = total
        self.counts = counts
        message = str(findings[0])
        if total > 1:
            message += f" (and {total - 1} more)"
        super().__init__(message)


class Overloaded(KilnError):
    """Too much queued work: the request was not accepted; retrying later may succeed."""

    status_code = 503

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is overloaded: {reason}; retry later")
