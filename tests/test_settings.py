"""Production settings pass Django's deployment checks, and bad settings stop the start.

Each case runs `manage.py` in a fresh interpreter: settings are read once per process, so the
only honest way to test "this environment starts / refuses to start" is to start a process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def run_manage(tmp_path: Path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CURATECT_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="platform_core.settings_production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="curatect.example.org",
        CURATECT_PSEUDONYM_KEY=secrets.token_urlsafe(32),
        CURATECT_SEALING_KEYS=Fernet.generate_key().decode(),
        CURATECT_DATA_DIR=str(tmp_path),
    )
    env.update(env_overrides)
    env = {k: v for k, v in env.items() if v != ""}  # "" means: leave this variable unset
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_the_deployment_security_checks(tmp_path):
    result = run_manage(tmp_path, "check", "--deploy", "--tag", "security", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_every_system_check_passes_without_errors_under_production_settings(tmp_path):
    # All tags (models, URLs, the API schema): warnings there belong to their own tests, but an
    # error would stop `manage.py migrate` in the production stack.
    result = run_manage(tmp_path, "check", "--deploy")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be true or false"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG=false only"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set"),
        ({"CURATECT_PSEUDONYM_KEY": ""}, "CURATECT_PSEUDONYM_KEY must be set"),
        ({"CURATECT_SEALING_KEYS": ""}, "CURATECT_SEALING_KEYS must be set"),
        ({"CURATECT_SEALING_KEYS": " , "}, "CURATECT_SEALING_KEYS must be set"),
        ({"CURATECT_SEALING_KEYS": "not-a-fernet-key"}, "key 1 of 1 is not one"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "a year"}, "DJANGO_SECURE_HSTS_SECONDS must be an integer"),
    ],
)
def test_a_bad_production_environment_fails_loudly_at_start(tmp_path, env, reason):
    result = run_manage(tmp_path, "check", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert reason in result.stderr
