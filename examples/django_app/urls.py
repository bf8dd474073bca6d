"""The routes: the Flask example's three, one per-model predict route, and a health check."""

from __future__ import annotations

from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("", views.form, name="form"),
    path("predict", views.predict, name="predict"),
    path("predict-form", views.predict_form, name="predict-form"),
    path("models/<str:name>/predict", views.predict_model, name="predict-model"),
    path("healthz", views.healthz, name="healthz"),
]
