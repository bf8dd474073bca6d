"""In-process predictions, for Python apps (Flask, Django) that don't want HTTP.

    import kiln
    churn = kiln.Predictor.from_store("churn")     # its production version, or "churn:VERSION"
    churn.predict([{"tenure_months": 3, "plan": "fiber", ...}])
    churn.predict(dataframe)                       # same columns as the training file

The model is resolved as the service resolves it (kiln/resolve.py), opened with the same
integrity check, and rows are checked by the same rules (kiln/records.py, kiln/values.py):
the same answer and the same error as ``POST /v1/models/{name}/predict``; no batching.

Rows are then held against the training data by the same input checks (kiln/checks.py), under
``input_checks`` (default: the model's own mode, from its spec's ``monitoring.input_checks``):

    churn = kiln.Predictor.from_store("churn", input_checks="reject")

``warn`` adds ``warnings`` and ``warning_count`` to the answer when a row has an unseen
category, an out-of-range number or an unexpected missing value, exactly as the JSON route
does; ``reject`` raises :class:`kiln.errors.InputRejected` (status 422, the route's message);
``accept`` answers as if nothing was checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from kiln.artifact import CheckMode
from kiln.checks import InputChecks, parse_mode, warnings_body
from kiln.errors import InvalidInput, NonFiniteOutput
from kiln.records import decode_instances, encode_predictions
from kiln.resolve import Warn, resolve
from kiln.runtime import ModelRuntime, default_providers
from kiln.store import StoredModel
from kiln.values import check_columns, nonfinite_outputs

__all__ = ["DEFAULT_MAX_ROWS", "Predictor"]

DEFAULT_MAX_ROWS = 10_000
"""Most rows one call takes by default (the service's `max_rows_per_request` default)."""


class Predictor:
    """One model version, loaded from the store and warmed up."""

    def __init__(
        self,
        stored: StoredModel,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 1,
        max_rows: int = DEFAULT_MAX_ROWS,
        unknown_features: Literal["reject", "ignore"] = "reject",
        input_checks: Literal["accept", "warn", "reject"] | CheckMode | None = None,
    ) -> None:
        try:
            mode = parse_mode(input_checks) if input_checks is not None else None
        except ValueError as exc:  # before the model is opened: a typo costs nothing
            raise InvalidInput(f"input_checks: {exc}") from None
        self.runtime = ModelRuntime(
            stored, list(providers or default_providers()), intra_op_threads
        )
        self.runtime.warm_up()
        self.metadata = self.runtime.metadata
        self.max_rows = max_rows
        self.unknown_features: Literal["reject", "ignore"] = unknown_features
        self._features = [(f.name, f.kind) for f in self.metadata.features]
        self._checks = InputChecks(self.metadata, mode)

    @property
    def input_checks(self) -> CheckMode:
        """The input-check mode in use: the one asked for, else the model's own."""
        return self._checks.mode

    @classmethod
    def from_store(cls, ref: str, *, warn: Warn | None = None, **options: Any) -> Predictor:
        """Load ``NAME`` (its production version) or ``NAME:VERSION`` from ``$BENTOML_HOME``.

        A rejected version is loaded only when named exactly, with a warning (``warn``, else
        the ``kiln`` logger). ``options`` are the constructor's keyword arguments.
        """
        return cls(resolve(ref, warn=warn), **options)

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def version(self) -> str:
        return self.runtime.version

    def predict(self, data: Any) -> dict[str, Any]:
        """Predict on a list of records (dicts) or a pandas DataFrame.

        Returns ``{"model", "version", "predictions"}`` and, for classifiers,
        ``"probabilities"`` (or ``"scores"``) as one ``{class: value}`` dict per row; under
        ``warn`` input checks, also ``"warnings"`` (row, feature, value, reason, message for
        each of the first 100 findings) and ``"warning_count"`` when a row failed one.
        Raises :class:`kiln.errors.InvalidInput` for bad input, naming the row and feature,
        :class:`kiln.errors.InputRejected` (one of them) under ``reject`` input checks, and
        :class:`kiln.errors.NonFiniteOutput` (another) when the model's answer for a row is
        not a finite number.
        """
        if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
            frame = data.astype(object).where(data.notna(), None)
            data = frame.to_dict(orient="records")
        columns, _ = decode_instances(
            {"instances": data},
            self._features,
            max_rows=self.max_rows,
            unknown=self.unknown_features,
        )
        check_columns(self.metadata, columns)
        _, findings, total = self._checks.inspect(columns)  # raises InputRejected under reject
        outputs = self.runtime.run(columns)
        bad = nonfinite_outputs(outputs)
        if bad:
            raise NonFiniteOutput(bad)
        answer = encode_predictions(
            model=self.name, version=self.version, outputs=outputs, classes=self.metadata.classes
        )
        if findings:  # warn (accept returns none: its findings are only counted)
            answer.update(warnings_body(findings, total))
        return answer
