"""Prove the data is intact (#16 §3): manage.py verify_storage finds every damaged, missing and
orphaned stored file of a curated campaign (scan volumes, revision blobs, an export, a model), and
a backup restored into a new database and data folder passes it with its rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.modelassist.curated import approve, import_scans, label_volume, run_export

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def curated(cast, tmp_path):
    """Two approved scans with revisions, a published export and a registered model version."""
    from modelassist import network
    from modelassist.selectors import media_path
    from modelassist.services.model_versions import model_version_register, new_model_path

    cases = [
        (scan, label_volume(truth, scan.shape))
        for scan, truth in import_scans(cast, tmp_path, "alpha", 2, first_seed=0)
    ]
    approve(cast, cases)
    export = run_export(cast)
    assert export.status == "done", export.error
    relative = new_model_path(cast.campaign)
    media_path(relative).parent.mkdir(parents=True, exist_ok=True)
    network.save_model(network.build_model("unet2d-tiny"), media_path(relative), {"note": "test"})
    version = model_version_register(campaign=cast.campaign, name="m1", file_path=relative, trained_on=export)
    return {"scans": [s for s, _ in cases], "export": export, "model": version}


def verify(*args: str) -> tuple[int, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("verify_storage", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def flip_byte(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def media(rel: str) -> Path:
    from modelassist.selectors import media_path

    return media_path(rel)


def blob_of(revision) -> Path:
    return media(f"labels/{revision.label_sha256[:2]}/{revision.label_sha256}.zst")


def test_a_curated_campaign_passes(curated):
    code, out = verify("--strict")

    assert code == 0, out
    assert "0 missing, 0 mismatched, 0 unreadable, 0 orphans" in out


@pytest.mark.parametrize("what", ["revision", "volume", "export", "model"])
def test_a_flipped_byte_is_reported_and_fails(curated, what):
    from annotation.models import Revision

    scan, export, model = curated["scans"][0], curated["export"], curated["model"]
    path, owner = {
        "revision": lambda: (blob_of(Revision.objects.filter(annotation__scan=scan).last()), "revision"),
        "volume": lambda: (media(f"{scan.storage_dir}/volume.npy"), f"scan {scan.pk}"),
        "export": lambda: (media(f"{export.path}/dataset.json"), f"export {export.pk}"),
        "model": lambda: (media(model.file_path), f"model version {model.pk}"),
    }[what]()
    flip_byte(path, at=len(path.read_bytes()) // 2)

    code, out = verify()

    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("MISMATCH")]
    assert str(path.relative_to(media(""))) in line and owner in line


def test_a_changed_export_manifest_is_reported(curated):
    path = media(f"{curated['export'].path}/manifest.json")
    manifest = json.loads(path.read_text())
    manifest["cases"][0]["split"] = "test" if manifest["cases"][0]["split"] != "test" else "train"
    path.write_text(json.dumps(manifest))

    code, out = verify()

    assert code == 1 and "MISMATCH" in out and "manifest.json" in out


def test_a_flipped_byte_in_a_volume_header_is_reported(curated):
    path = media(f"{curated['scans'][0].storage_dir}/volume.npy")
    text = path.read_bytes().replace(b"'<i2'", b"'<u2'", 1)
    path.write_bytes(text)

    code, out = verify()

    assert code == 1 and "UNREADABLE" in out and "the scan says int16" in out


def test_a_deleted_file_is_reported(curated):
    scan = curated["scans"][1]
    media(f"{scan.storage_dir}/00003.dcm").unlink()
    media(curated["model"].file_path).unlink()

    code, out = verify()

    assert code == 1
    missing = [ln for ln in out.splitlines() if ln.startswith("MISSING")]
    assert len(missing) == 2
    assert any(f"scan {scan.pk} instance 3" in ln for ln in missing)
    assert any(f"model version {curated['model'].pk}" in ln for ln in missing)


def test_an_orphan_is_listed_and_kept_and_deleted_only_when_asked(curated):
    orphan = media("labels/zz/not-a-revision.zst")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"stray")
    os.utime(orphan, (orphan.stat().st_atime - 7200, orphan.stat().st_mtime - 7200))
    recent = media("models/covid19/just-written.pt")
    recent.write_bytes(b"weights of a row not committed yet")

    code, out = verify()
    assert code == 0  # orphans alone do not fail
    assert "ORPHAN labels/zz/not-a-revision.zst" in out and "ORPHAN models/covid19/just-written.pt" in out
    assert orphan.exists()
    assert verify("--strict")[0] == 1

    code, out = verify("--delete-orphans")
    assert code == 0 and "DELETED labels/zz/not-a-revision.zst" in out
    assert not orphan.exists() and not orphan.parent.exists()
    assert recent.exists()  # younger than the grace period: maybe a write in progress
    assert verify("--strict")[0] == 1 and verify("--strict", "--grace", "0", "--delete-orphans")[0] == 1
    assert not recent.exists() and verify("--strict")[0] == 0


def test_a_damaged_export_manifest_keeps_its_folder_from_being_called_orphans(curated):
    export = curated["export"]
    media(f"{export.path}/manifest.json").write_text("{ not json")

    code, out = verify("--delete-orphans", "--grace", "0")

    assert code == 1 and "UNREADABLE" in out and "ORPHAN" not in out
    assert media(f"{export.path}/dataset.json").exists()


# ----------------------------------------------------------------------------- backup and restore


def manage(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CURATECT_", "DJANGO_"))
    }
    environment.update({"CURATECT_DATA_DIR": str(data_dir), **(env or {})})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


ROW_COUNTS = (
    "import json; from core.models import Scan, Instance, AuditEvent; from annotation.models import Revision; "
    "from modelassist.models import DatasetExport, ModelVersion; "
    "print(json.dumps({m.__name__: m.objects.count() for m in (Scan, Instance, Revision, DatasetExport, ModelVersion, AuditEvent)}))"
)


def row_counts() -> dict[str, int]:
    from annotation.models import Revision
    from core.models import AuditEvent, Instance, Scan
    from modelassist.models import DatasetExport, ModelVersion

    return {
        m.__name__: m.objects.count()
        for m in (Scan, Instance, Revision, DatasetExport, ModelVersion, AuditEvent)
    }


@pytest.mark.django_db(transaction=True)
def test_backup_restored_into_a_new_sqlite_database_and_data_folder_passes_verify_storage(
    curated, settings, tmp_path
):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite path; the PostgreSQL one is test_backup_restore_on_postgresql")
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    (Path(settings.DATA_DIR) / "secret_key").write_text(settings.SECRET_KEY + "\n")
    expected = row_counts()
    call_command("backup", str(tmp_path / "backup"))
    new_site = tmp_path / "new-site"

    restored = manage(new_site, "restore", str(tmp_path / "backup"))

    assert restored.returncode == 0, restored.stderr
    assert (new_site / "secret_key").read_text().strip() == settings.SECRET_KEY
    checked = manage(new_site, "verify_storage", "--strict")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    counts = manage(new_site, "shell", "-c", ROW_COUNTS)
    assert json.loads(counts.stdout.strip().splitlines()[-1]) == expected
    assert expected["Scan"] == 2 and expected["DatasetExport"] == 1 and expected["ModelVersion"] == 1
    # A second restore over the now non-empty site is refused, and nothing changes.
    again = manage(new_site, "restore", str(tmp_path / "backup"))
    assert again.returncode != 0 and "not empty" in again.stderr


@pytest.mark.django_db(transaction=True)
def test_a_damaged_backup_is_refused_before_anything_is_restored(curated, tmp_path):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("runs on SQLite; the PostgreSQL path is test_backup_restore_on_postgresql")
    call_command("backup", str(tmp_path / "backup"))
    (blob,) = list((tmp_path / "backup" / "media" / "models").rglob("*.pt"))
    flip_byte(blob)
    new_site = tmp_path / "new-site"

    restored = manage(new_site, "restore", str(tmp_path / "backup"))

    assert restored.returncode != 0 and "damaged" in restored.stderr and "models/" in restored.stderr
    assert not (new_site / "media").exists() or not any((new_site / "media").rglob("*.*"))
    assert not (new_site / "curatect.sqlite3").exists()


def test_backup_refuses_a_folder_that_is_not_empty(curated, tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "something").write_text("x")

    with pytest.raises(CommandError, match="not an empty folder"):
        call_command("backup", str(tmp_path / "backup"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_backup_restore_on_postgresql(curated, tmp_path):
    """pg_dump -Fc → pg_restore into a new database (same server) → verify_storage passes."""
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (make test-pg): pg_dump and pg_restore")
    expected = row_counts()
    call_command("backup", str(tmp_path / "backup"))
    s = connection.settings_dict
    target = f"{s['NAME']}_restored"
    params = {
        "host": s["HOST"],
        "port": s["PORT"],
        "user": s["USER"],
        "password": s["PASSWORD"],
        "dbname": s["NAME"],
    }
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{target}"')
        admin.execute(f'CREATE DATABASE "{target}"')
    try:
        url = f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{target}"
        new_site = tmp_path / "new-site"
        restored = manage(new_site, "restore", str(tmp_path / "backup"), env={"DATABASE_URL": url})
        assert restored.returncode == 0, restored.stderr
        checked = manage(new_site, "verify_storage", "--strict", env={"DATABASE_URL": url})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        counts = manage(new_site, "shell", "-c", ROW_COUNTS, env={"DATABASE_URL": url})
        assert json.loads(counts.stdout.strip().splitlines()[-1]) == expected
    finally:
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
