"""Ops blueprint: health, metrics, API and pages."""

from flask import Blueprint

ops_blueprint = Blueprint("ops", __name__)

from app.ops import health  # noqa: E402,F401  (registers the routes)
