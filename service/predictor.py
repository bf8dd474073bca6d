"""In-process predictions, for Python apps (Flask, Django) that don't want HTTP.

    from service import Predictor
    churn = Predictor.from_store("churn")          # newest version, or "churn:VERSION"
    churn.predict([{"tenure_months": 3, "plan": "fiber", ...}])
    churn.predict(dataframe)                       # same columns as the training file

Same validation and the same answer as ``POST /v1/models/{name}/predict``; no batching.
"""

from __future__ import annotations

from typing import Any

from kiln.store import StoredModel, get_model
from service.codecs.records import decode_instances, encode_predictions
from service.dataplane import check_columns
from service.runtime import ModelRuntime, default_providers
from service.settings import ServingSettings

__all__ = ["Predictor"]


class Predictor:
    """One model version, loaded from the store and warmed up."""

    def __init__(self, stored: StoredModel, settings: ServingSettings | None = None) -> None:
        self.settings = settings or ServingSettings()
        providers = self.settings.providers or default_providers()
        self.runtime = ModelRuntime(stored, providers, self.settings.intra_op_threads)
        self.runtime.warm_up()
        self.metadata = self.runtime.metadata
        self._features = [(f.name, f.kind) for f in self.metadata.features]

    @classmethod
    def from_store(cls, ref: str, settings: ServingSettings | None = None) -> Predictor:
        """Load ``NAME`` (its newest version) or ``NAME:VERSION`` from ``$BENTOML_HOME``."""
        return cls(get_model(ref), settings)

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def version(self) -> str:
        return self.runtime.version

    def predict(self, data: Any) -> dict[str, Any]:
        """Predict on a list of records (dicts) or a pandas DataFrame.

        Returns ``{"model", "version", "predictions"}`` and, for classifiers,
        ``"probabilities"`` (or ``"scores"``) as one ``{class: value}`` dict per row.
        Raises :class:`kiln.errors.InvalidInput` for bad input, naming the row and feature.
        """
        if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
            frame = data.astype(object).where(data.notna(), None)
            data = frame.to_dict(orient="records")
        columns, _ = decode_instances(
            {"instances": data},
            self._features,
            max_rows=self.settings.max_rows_per_request,
            unknown=self.settings.unknown_features,
        )
        check_columns(self.metadata, columns)
        outputs = self.runtime.run(columns)
        return encode_predictions(
            model=self.name, version=self.version, outputs=outputs, classes=self.metadata.classes
        )
