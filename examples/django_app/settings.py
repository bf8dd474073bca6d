"""Settings of the example project: no database, no migrations, no committed secret.

Everything it reads from the environment is read here, once:

- ``KILN_MODEL``: the model ``/``, ``/predict`` and ``/predict-form`` answer with (``NAME`` or
  ``NAME:VERSION``; default ``churn``). ``/models/<name>/predict`` takes any model.
- ``DJANGO_DEBUG=1``: Django's debug mode (tracebacks in error pages); off otherwise.
- ``DJANGO_SECRET_KEY``: the signing key. The app signs nothing (no sessions, no CSRF
  cookies, no auth), so without one a random key is generated at each start; never commit one.
- ``DJANGO_ALLOWED_HOSTS``: comma-separated host names to answer for, besides 127.0.0.1 and
  localhost.

``BENTOML_HOME`` (read by BentoML itself) says which model store the Predictors load from.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

HERE = Path(__file__).resolve().parent

KILN_MODEL = os.environ.get("KILN_MODEL", "churn")

DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = [
    "127.0.0.1",
    "localhost",
    *(h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()),
]

ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
# No sessions or cookies, so no CSRF middleware: nothing a forged request could act on.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        # The template the Flask example renders too (examples/templates/form.html): Jinja2.
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [HERE.parent / "templates"],
        "OPTIONS": {"autoescape": True},
    }
]
USE_TZ = True
