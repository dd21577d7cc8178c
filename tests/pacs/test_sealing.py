"""A PACS's password or token is sealed at rest (core/sealing.py): the database never holds
it in clear, it still authenticates against real peers, keys rotate, a changed key says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import sealing
from core.models import AuditEvent
from pacs import remote as pacs
from pacs.models import RemotePacs

ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "bearer-token-which-must-not-leak"


def new_key() -> str:
    return Fernet.generate_key().decode()


def raw_rows() -> list[tuple]:
    """Every column of every remote PACS row, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {RemotePacs._meta.db_table}")
        return cursor.fetchall()


def assert_nowhere_in_clear(secret: str) -> None:
    rows = raw_rows()
    assert rows, "no remote PACS rows to look at"
    assert not any(secret in str(value) for row in rows for value in row)
    assert not any(secret in str(event) for event in AuditEvent.objects.values())


def stored_remote(cast, secret: str = TOKEN_SECRET, **fields) -> RemotePacs:
    remote = RemotePacs(
        institution=cast.institution,
        name=fields.pop("name", "PACS"),
        dicomweb_url=fields.pop("dicomweb_url", "http://127.0.0.1:9/dicom-web"),
        auth_type=fields.pop("auth_type", RemotePacs.Auth.BEARER),
        **fields,
    )
    remote.set_secret(secret)
    remote.save()
    return remote


# --- at rest, through the API, against real peers -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_secret_set_through_the_api_is_sealed_in_the_database_and_still_opens_orthanc(api, cast, orthanc):
    api.force_authenticate(cast.manager)
    password = orthanc.auth[1]

    created = api.post(
        "/api/pacs/remotes/",
        {
            "name": "Radiology PACS",
            "dicomweb_url": orthanc.dicomweb_url,
            "auth_type": "basic",
            "username": orthanc.auth[0],
            "secret": password,
        },
        format="json",
    )
    remote_id = created.json()["id"]
    echo = api.post(f"/api/pacs/remotes/{remote_id}/echo/")
    (row,) = RemotePacs.objects.filter(pk=remote_id).values()

    assert created.status_code == 201, created.json()
    assert "secret" not in created.json() and created.json()["has_secret"] is True
    assert echo.json() == {"dicomweb": {"ok": True}}
    assert "secret" not in row and row["secret_sealed"] and password not in row["secret_sealed"]
    assert sealing.unseal(row["secret_sealed"]) == password
    assert_nowhere_in_clear(password)

    # A change of anything else keeps the sealed secret; a wrong one is refused by the PACS.
    renamed = api.patch(f"/api/pacs/remotes/{remote_id}/", {"name": "Renamed"}, format="json")
    assert renamed.json()["has_secret"] is True
    assert api.post(f"/api/pacs/remotes/{remote_id}/echo/").json() == {"dicomweb": {"ok": True}}
    api.patch(f"/api/pacs/remotes/{remote_id}/", {"secret": "wrong"}, format="json")
    refused = api.post(f"/api/pacs/remotes/{remote_id}/echo/").json()["dicomweb"]
    assert refused["ok"] is False and "refused the credentials" in refused["detail"]

    # No authentication: the sealed secret goes too.
    cleared = api.patch(f"/api/pacs/remotes/{remote_id}/", {"auth_type": "none"}, format="json")
    assert cleared.json()["has_secret"] is False
    assert RemotePacs.objects.values_list("secret_sealed", "username").get(pk=remote_id) == ("", "")


@pytest.mark.django_db(transaction=True)
def test_a_sealed_bearer_token_opens_a_dicomweb_server(api, cast, live_server, import_phantoms):
    """Our own DICOMweb server takes API tokens as bearer tokens: a real peer for Bearer auth."""
    from rest_framework.authtoken.models import Token

    (scan,) = import_phantoms(1, slices=4, size=32)
    token = Token.objects.create(user=cast.manager).key
    api.force_authenticate(cast.manager)

    created = api.post(
        "/api/pacs/remotes/",
        {
            "name": "Peer",
            "dicomweb_url": f"{live_server.url}/dicomweb",
            "auth_type": "bearer",
            "secret": token,
        },
        format="json",
    )
    remote = RemotePacs.objects.get(pk=created.json()["id"])
    found = pacs.search_studies(remote, {})

    assert created.status_code == 201, created.json()
    assert [s["0020000D"]["Value"][0] for s in found] == [scan.study.study_uid]
    assert_nowhere_in_clear(token)
    remote.set_secret("not-a-token")
    with pytest.raises(pacs.RemoteError, match="refused the credentials"):
        pacs.search_studies(remote, {})


# --- keys: rotation, a changed key, development and production -----------------------------------


def test_the_first_key_seals_and_every_key_unseals(settings):
    old, new = new_key(), new_key()
    settings.CURATECT_SEALING_KEYS = [old]
    sealed_before = sealing.seal("s3cret")

    settings.CURATECT_SEALING_KEYS = [new, old]
    sealed_after = sealing.seal("s3cret")

    assert sealing.unseal(sealed_before) == sealing.unseal(sealed_after) == "s3cret"
    assert Fernet(new).decrypt(sealed_after.encode()) == b"s3cret"
    with pytest.raises(InvalidToken):
        Fernet(old).decrypt(sealed_after.encode())
    assert sealed_before != sealed_after and "s3cret" not in sealed_before + sealed_after


@pytest.mark.django_db
def test_a_remote_sealed_under_the_old_key_still_authenticates_after_rotation(cast, settings):
    old = new_key()
    settings.CURATECT_SEALING_KEYS = [old]
    remote = stored_remote(cast)

    settings.CURATECT_SEALING_KEYS = [new_key(), old]
    reloaded = RemotePacs.objects.get(pk=remote.pk)

    assert reloaded.secret_value() == TOKEN_SECRET
    assert pacs._session(reloaded).headers["Authorization"] == f"Bearer {TOKEN_SECRET}"


@pytest.mark.django_db
def test_a_secret_no_current_key_opens_says_to_enter_it_again(api, cast, settings):
    settings.CURATECT_SEALING_KEYS = [new_key()]
    remote = stored_remote(cast, username="u", auth_type=RemotePacs.Auth.BASIC)
    settings.CURATECT_SEALING_KEYS = [new_key()]  # the old key is gone
    api.force_authenticate(cast.manager)

    with pytest.raises(sealing.SealingKeyChanged) as raised:
        RemotePacs.objects.get(pk=remote.pk).secret_value()
    listed = api.get(f"/api/pacs/remotes/{remote.pk}/")
    search = api.get(f"/api/pacs/remotes/{remote.pk}/studies/")
    echo = api.post(f"/api/pacs/remotes/{remote.pk}/echo/")

    message = str(raised.value)
    assert "sealing keys" in message and "enter the password or token again" in message
    assert TOKEN_SECRET not in message and raised.value.code == "sealing_key_changed"
    assert listed.status_code == 200 and listed.json()["has_secret"] is True
    assert search.status_code == 400 and "sealing keys" in search.json()["detail"]
    assert (
        echo.json()["dicomweb"]["ok"] is False and "enter the password" in echo.json()["dicomweb"]["detail"]
    )
    assert TOKEN_SECRET not in search.content.decode() + echo.content.decode()

    # Entering it again is the way out.
    api.patch(f"/api/pacs/remotes/{remote.pk}/", {"secret": "entered-again"}, format="json")
    assert RemotePacs.objects.get(pk=remote.pk).secret_value() == "entered-again"


def sealing_keys_of_development_settings(data_dir: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CURATECT_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from platform_core import settings; print(','.join(settings.CURATECT_SEALING_KEYS))",
        ],
        cwd=ROOT,
        env={**clean, "CURATECT_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_development_derives_a_stable_key_from_the_secret_key_when_none_is_set(tmp_path):
    first = sealing_keys_of_development_settings(tmp_path, DJANGO_SECRET_KEY="one-secret-key")
    again = sealing_keys_of_development_settings(tmp_path, DJANGO_SECRET_KEY="one-secret-key")
    other = sealing_keys_of_development_settings(tmp_path, DJANGO_SECRET_KEY="another-secret-key")
    given = new_key()
    listed = sealing_keys_of_development_settings(tmp_path, CURATECT_SEALING_KEYS=f"{given}, {first}")

    assert first == again != other
    Fernet(first)  # a valid Fernet key
    assert listed == f"{given},{first}"


# --- the migration that sealed the secrets stored in clear ----------------------------------------

BEFORE = [("platform_core", "0002_pacs")]
AFTER = [("platform_core", "0003_remotepacs_secret_sealed")]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


def columns() -> set[str]:
    with connection.cursor() as cursor:
        table = connection.introspection.get_table_description(cursor, RemotePacs._meta.db_table)
    return {c.name for c in table}


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_secrets_stored_in_clear_and_drops_the_clear_column():
    try:
        executor = migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        institution = old.get_model("platform_core", "Institution").objects.create(slug="h", name="H")
        old_remote = old.get_model("platform_core", "RemotePacs")
        with_secret = old_remote.objects.create(
            institution=institution, name="A", auth_type="basic", username="u", secret="clear-password"
        )
        without = old_remote.objects.create(institution=institution, name="B")

        migrate(AFTER)
        after_columns = columns()
        remote = RemotePacs.objects.get(pk=with_secret.pk)
        sealed_row = raw_rows()
        unsealed = remote.secret_value()
        has = (remote.has_secret, RemotePacs.objects.get(pk=without.pk).has_secret)

        migrate(BEFORE)  # backwards: the clear column comes back, filled
        back = dict(old_remote.objects.values_list("name", "secret"))
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert "secret" not in after_columns and "secret_sealed" in after_columns
    assert not any("clear-password" in str(value) for row in sealed_row for value in row)
    assert unsealed == "clear-password" and has == (True, False)
    assert back == {"A": "clear-password", "B": ""}
