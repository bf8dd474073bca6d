"""The try-it form both example apps show (examples/flask_app, examples/django_app): one
template (templates/form.html, Jinja2 in both) and one definition of how a form field becomes
a feature value and an answer a sentence, so the two apps cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiln import Predictor
from kiln.artifact import Feature, FeatureKind
from kiln.errors import KilnError

__all__ = ["TEMPLATES", "answer_form", "default_value", "from_form", "in_words"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Where form.html is (a Jinja2 template: Flask's engine, and Django's Jinja2 backend)."""


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


def answer_form(predictor: Predictor, values: dict[str, str]) -> tuple[str | None, str | None, int]:
    """The form's fields predicted: (the answer in words, or None; the error, or None; the
    HTTP status: 200, or the error's)."""
    record = {f.name: from_form(f, values[f.name]) for f in predictor.metadata.features}
    try:
        return in_words(predictor.predict([record])), None, 200
    except KilnError as exc:
        return None, exc.message, exc.status_code
