"""Words and numbers as a person reads them: feature labels, counts, percentages, intervals.

The rules a client document needs everywhere, defined once: a feature is called by its label
(the spec's or the import's, else its column name made readable: ``bill_length_mm`` ->
"bill length (mm)"); years and identifiers print without thousands separators ("2007", not
"2,007"); counts agree with their noun ("1 mistake", "2 mistakes"); a share is never rounded
to 100% (or 0%) unless it is exactly that; a rate measured on ``n`` cases comes with its 95%
interval (Wilson's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.artifact import ModelMetadata

__all__ = [
    "UNITS",
    "day",
    "feature_label",
    "is_identifier_like",
    "is_year_like",
    "join_words",
    "number",
    "percent",
    "plural",
    "quoted",
    "rate_interval",
    "readable_name",
    "value_text",
    "whole_number",
]

# The last word of a column name that is a unit, and how the unit is written ("data_gb" ->
# "data (GB)"). Only a last word that follows another: a column named "days" is "days".
UNITS: dict[str, str] = {
    "mm": "mm",
    "cm": "cm",
    "m": "m",
    "km": "km",
    "g": "g",
    "kg": "kg",
    "lb": "lb",
    "kb": "KB",
    "mb": "MB",
    "gb": "GB",
    "tb": "TB",
    "ms": "ms",
    "sec": "seconds",
    "secs": "seconds",
    "seconds": "seconds",
    "min": "minutes",
    "mins": "minutes",
    "minutes": "minutes",
    "hours": "hours",
    "days": "days",
    "weeks": "weeks",
    "months": "months",
    "years": "years",
    "pct": "%",
    "percent": "%",
    "usd": "USD",
    "eur": "EUR",
    "gbp": "GBP",
}
YEAR_WORDS = frozenset({"year", "yr", "date"})
YEARS = (1900, 2100)  # a whole number in this range, in a year-like column, is a year
ID_WORDS = frozenset({"id", "code", "zip", "zipcode", "postcode"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_.\-]+")


def day(when: datetime, *, time: bool = False) -> str:
    """A date as people write it: "1 December 2026" (no leading zero), with ", 09:30 UTC"."""
    text = f"{when.day} {when:%B %Y}"
    return f"{text}, {when:%H:%M} UTC" if time else text


def _words(name: str) -> list[str]:
    """The words of a column name: split at ``_``, ``-``, ``.``, spaces and camelCase."""
    return [w for w in _SEPARATORS.split(_CAMEL.sub(" ", name)) if w]


def readable_name(name: str) -> str:
    """A column name as words: ``tenure_months`` -> "tenure (months)", ``monthlyCharges`` ->
    "monthly charges". Acronyms written in capitals stay so ("CPU load")."""
    words = _words(name)
    if not words:
        return name
    shown = [w if len(w) > 1 and w.isupper() else w.lower() for w in words]
    shown = ["ID" if w == "id" else w for w in shown]
    unit = UNITS.get(words[-1].lower()) if len(words) > 1 else None
    if unit is not None:
        return f"{' '.join(shown[:-1])} ({unit})"
    return " ".join(shown)


def feature_label(meta_or_labels: ModelMetadata | Mapping[str, str] | None, name: str) -> str:
    """What a reader calls feature ``name``: its label in the model's metadata (or in the
    mapping given), else its column name made readable."""
    label: str | None = None
    if isinstance(meta_or_labels, Mapping):
        label = meta_or_labels.get(name)
    elif meta_or_labels is not None:
        label = next(
            (getattr(f, "label", None) for f in meta_or_labels.features if f.name == name), None
        )
    return label or readable_name(name)


def is_year_like(name: str, values: Sequence[float] | None = None) -> bool:
    """Whether whole numbers of column ``name`` are years: its name says year/yr/date, or every
    one of ``values`` is a whole number between 1900 and 2100."""
    if YEAR_WORDS & {w.lower() for w in _words(name)}:
        return True
    return bool(values) and all(
        float(v).is_integer() and YEARS[0] <= v <= YEARS[1] for v in values or ()
    )


def is_identifier_like(name: str) -> bool:
    """Whether column ``name`` holds codes (its last word is id, code or zip)."""
    words = _words(name)
    return bool(words) and words[-1].lower() in ID_WORDS


def whole_number(value: float, name: str = "", values: Sequence[float] | None = None) -> str:
    """A whole number: "12,345", but "2007" for a year and "10115" for an identifier."""
    n = round(value)
    year = YEARS[0] <= n <= YEARS[1] and is_year_like(name, values)
    return str(n) if year or is_identifier_like(name) else f"{n:,}"


def number(value: float) -> str:
    """A measurement as a person reads it: 3 significant digits, no exponent below 1,000."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    text = f"{value:.3g}"
    return text if "e" not in text else f"{value:.2e}"


def value_text(value: float, name: str = "", values: Sequence[float] | None = None) -> str:
    """A value of feature ``name``: a whole number by :func:`whole_number`, else :func:`number`."""
    if float(value).is_integer():
        return whole_number(value, name, values)
    return number(value)


def percent(share: float) -> str:
    """``share`` (0-1) as a percentage: "41%", but "99.6%", never "100%", for 0.996 (and
    "0.4%", never "0%", for 0.004): a rounded figure never claims a perfect record."""
    if share in (0, 1):
        return f"{share:.0%}"
    for digits in (0, 1, 2):
        text = f"{share * 100:.{digits}f}"
        if 0 < float(text) < 100:
            return f"{text}%"
    # closer than 0.005% to 0 or 100: say the nearest figure that is not the limit
    return "0.01%" if share < 0.5 else "99.99%"


def plural(n: int, singular: str, plural: str | None = None) -> str:
    """``1 case``, ``2 cases``, ``3 classes``, ``2 categories``, with thousands separators."""
    if n == 1:
        return f"{n:,} {singular}"
    if plural is None:
        if singular.endswith(("s", "x", "ch", "sh")):
            plural = singular + "es"
        elif singular.endswith("y") and singular[-2:-1] not in tuple("aeiou"):
            plural = singular[:-1] + "ies"
        else:
            plural = singular + "s"
    return f"{n:,} {plural}"


def quoted(value: Any) -> str:
    """A class name as the reader sees it: 'yes'."""
    return f"'{value}'"


def join_words(words: Sequence[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def rate_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The ``confidence`` interval of a rate of ``successes`` in ``n`` cases (Wilson score).

    Wilson's interval, not the normal one (rate ± 1.96 standard errors): it stays inside 0-1
    and does not shrink to nothing at 0 or ``n`` successes, which is exactly where a small test
    set puts a good model (69 right of 69 is 95% to 100%, not 100% to 100%). scipy, already
    installed with scikit-learn, computes it.
    """
    if n <= 0:
        raise ValueError(f"a rate needs at least one case, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    from scipy.stats import binomtest

    found = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    low, high = float(found.low), float(found.high)
    # the bounds are exact at the edges (0 or n successes); elsewhere keep float noise out
    return max(0.0, min(low, successes / n)), min(1.0, max(high, successes / n))
