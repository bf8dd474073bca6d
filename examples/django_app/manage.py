#!/usr/bin/env python
"""Django's command line for the example: ``python examples/django_app/manage.py runserver``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # The settings are `examples.django_app.settings`: the repository root must be importable
    # however this file is started.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
