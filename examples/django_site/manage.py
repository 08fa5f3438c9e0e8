#!/usr/bin/env python
"""Django's command-line utility for the example project: ``python manage.py runserver``.

Django applies ``settings.LOGGING`` at start-up, so every command logs through the handler;
records still queued when the command ends are delivered as the interpreter exits.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run a Django management command with this project's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
