"""The try-it form both example apps show (examples/flask_app, examples/django_app): one
definition of how a form field becomes a feature value and an answer becomes a sentence, so
the two apps cannot drift apart."""

from __future__ import annotations

from typing import Any

from kiln import Predictor
from kiln.artifact import Feature, FeatureKind

__all__ = ["default_value", "from_form", "in_words"]


def default_value(predictor: Predictor, feature: Feature) -> str:
    """A starting value for the form: the training median, or the most frequent category."""
    stats = predictor.metadata.feature_stats.get(feature.name)
    if feature.kind is FeatureKind.numeric and stats and stats.quantiles:
        return f"{stats.quantiles['p50']:g}"
    if feature.kind is FeatureKind.categorical and stats and stats.top:
        return next(iter(stats.top))
    return ""


def from_form(feature: Feature, text: str) -> Any:
    """A form field as the model takes it: empty is missing; numbers are parsed if they can be."""
    if text.strip() == "":
        return None
    if feature.kind is FeatureKind.numeric:
        try:
            return float(text)
        except ValueError:
            return text  # the Predictor rejects it with a message naming the feature
    return text


def in_words(answer: dict[str, Any]) -> str:
    """The first prediction in a sentence."""
    label = answer["predictions"][0]
    if "probabilities" in answer:
        return f"Predicted {label}, with probability {answer['probabilities'][0][str(label)]:.1%}."
    if "scores" in answer:
        return f"Predicted {label} (score {answer['scores'][0][str(label)]:.3f})."
    return f"Predicted {label:.4g}."
