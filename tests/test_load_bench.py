"""What bench/load.py (#16 §1) changed outside the bench: the viewer's DICOM JSON is built by the
import, the label cache is sized from the environment, and a plain-HTTP loopback stack can turn
off Secure cookies while production keeps them."""

from __future__ import annotations

import pytest

from tests.conftest import make_series
from tests.test_settings import run_manage


def test_an_import_builds_the_viewers_dicom_json_before_anyone_opens_the_scan(cast, tmp_path):
    from core.models import Scan
    from imaging.dicomweb.wado import _metadata_cache_file
    from imaging.ingest.service import import_job_run
    from imaging.models import ImportJob

    folder = make_series(tmp_path, slices=6, size=32)
    job = ImportJob.objects.create(institution=cast.institution, source=str(folder))

    job = import_job_run(job)

    assert job.status == ImportJob.Status.DONE, job.report
    scan = Scan.objects.get(pk=job.report["scans_created"][0])
    # The web process reads this file on the first opening instead of parsing every header.
    cached = _metadata_cache_file(scan)
    assert cached.exists()
    assert cached.read_text().count('"00080018"') == 6  # one DICOM JSON object per instance


@pytest.mark.parametrize(("value", "secure"), [("", "True True"), ("false", "False False")])
def test_secure_cookies_stay_on_unless_a_loopback_stack_turns_them_off(tmp_path, value, secure):
    shown = "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"

    result = run_manage(tmp_path, "shell", "-c", shown, DJANGO_SECURE_COOKIES=value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == secure  # after the shell's import banner


def test_the_label_cache_is_sized_from_the_environment(tmp_path):
    shown = "from django.conf import settings as s; print(s.LABEL_CACHE_BYTES)"

    default = run_manage(tmp_path, "shell", "-c", shown)
    sized = run_manage(tmp_path, "shell", "-c", shown, CURATECT_LABEL_CACHE_BYTES=str(3 * 1024**3))

    assert default.stdout.strip().splitlines()[-1] == str(512 * 1024**2), default.stderr
    assert sized.stdout.strip().splitlines()[-1] == str(3 * 1024**3), sized.stderr
