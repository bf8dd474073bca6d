"""Embedding Kiln in a Flask app: one in-process Predictor, no HTTP hop to a model server.

A web app that wants predictions next to its own code loads the model once, when the app is
created, and calls ``predictor.predict(records)`` in its views. ``Predictor`` validates input
exactly like the Kiln service and raises :class:`kiln.errors.KilnError` subclasses that carry
the HTTP status to answer with (``InvalidInput`` 400, ``ModelNotFound`` 404, ...), so one error
handler turns every bad request into ``{"error": message}`` instead of a 500. A Django app does
the same (examples/django_app/, the same routes and answers).

    make train                                    # put the demo models into the store
    .venv/bin/python examples/flask_app/app.py    # then open http://127.0.0.1:5000/
    curl -s localhost:5000/predict -H 'Content-Type: application/json' \\
         -d '{"tenure_months": 3, "monthly_charge": 60, ...}'

``KILN_MODEL`` picks the model (``NAME`` or ``NAME:VERSION``; default ``churn``).
"""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, render_template, request

from examples.forms import TEMPLATES, answer_form, default_value
from kiln import Predictor
from kiln.errors import InvalidInput, KilnError


def create_app(model: str | None = None) -> Flask:
    """The app, with ``model`` (default ``$KILN_MODEL``, else churn) loaded once, here."""
    app = Flask(__name__, template_folder=TEMPLATES)
    # ModelNotFound if it is not in the store
    predictor = Predictor.from_store(model or os.environ.get("KILN_MODEL", "churn"))
    app.extensions["kiln_predictor"] = predictor

    @app.errorhandler(KilnError)
    def kiln_error(error: KilnError) -> tuple[Response, int]:
        return jsonify(error=error.message), error.status_code

    @app.post("/predict")
    def predict() -> Response:
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            raise InvalidInput('send a JSON object: {"instances": [{...}, ...]} or one record')
        records = payload.get("instances", [payload])
        return jsonify(predictor.predict(records))

    @app.get("/")
    def form() -> str:
        values = {f.name: default_value(predictor, f) for f in predictor.metadata.features}
        return render_template("form.html", p=predictor, values=values)

    @app.post("/predict-form")
    def predict_form() -> tuple[str, int]:
        values = {f.name: request.form.get(f.name, "") for f in predictor.metadata.features}
        result, error, status = answer_form(predictor, values)
        page = render_template("form.html", p=predictor, values=values, result=result, error=error)
        return page, status

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=5000)
