#!/usr/bin/env python3
"""Django's command-line utility; starts the embedded servers when they are needed."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
    from django.core.management import execute_from_command_line

    from spinnakr import embedded

    if len(sys.argv) > 1 and sys.argv[1] not in {
        "help",
        "--help",
        "-h",
        "version",
        "--version",
        "check",
        "makemigrations",
    }:
        embedded.acquire()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
