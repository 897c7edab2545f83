"""What a process imports before Django's settings are configured."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings


def test_the_project_package_imports_before_django_is_configured() -> None:
    # `python -m spinnakr.run` and Celery import `spinnakr` (and with it the Celery app and the
    # event contract) first: nothing on that path may read a setting.
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", "import spinnakr, spinnakr.run"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr[-2000:]
