"""The split of platform_core (issue #13): ImportJob moved to `imaging`, the PACS models to `pacs`,
by state-only migrations. A database created at the head before the split migrates forward with
every row, key, link and content type kept (so permissions and admin log entries still point at
the same models), and migrates back again."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import sealing
from core.models import Campaign, Institution, User
from imaging.models import ImportJob
from pacs.models import PulledStudy, RemotePacs

# The head of every app just before the split (commit 4790afe): the other apps' latest nodes
# stay applied, the two new apps are not there yet.
BEFORE = [
    ("platform_core", "0004_ingest_integrity"),
    ("imaging", None),
    ("pacs", None),
    ("tokens", "0001_api_tokens"),
    ("annotation", "0002_initial"),
    ("qc", "0001_initial"),
    ("modelassist", "0002_retrain_schedule"),
    ("federation", None),  # came later (#15)
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
    ("admin", "0003_logentry_add_action_flag_choices"),
]
# A deployment that ran `migrate imaging` first: post_migrate then made a second, new content type
# imaging.importjob beside the old one, before the pacs migration moves the old one over.
IMAGING_ONLY = [("imaging", "0001_initial"), ("pacs", None)]

MOVED = {"importjob": "imaging", "remotepacs": "pacs", "pulledstudy": "pacs"}
REPORT = {"files": 3, "series": [{"uid": "1.2.3", "stored": True}], "rejected": []}
SECRET = "pacs-password-at-rest"


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


def models_at(executor: MigrationExecutor, targets):
    """The historical models at these targets (an app at None is simply not there)."""
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def tables() -> set[str]:
    return set(connection.introspection.table_names())


def content_types() -> dict[str, tuple[int, str]]:
    """model → (id, app_label) of the content types of the moved models, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT model, id, app_label FROM django_content_type WHERE model IN (%s, %s, %s)",
            list(MOVED),
        )
        rows = cursor.fetchall()
    assert len(rows) == len({model for model, _, _ in rows}), f"duplicate content types: {rows}"
    return {model: (ct_id, app_label) for model, ct_id, app_label in rows}


def create_at_the_old_head(old) -> dict:
    """Rows of every kind the move touches, created through the models as they were before it."""
    ContentTypeOld = old.get_model("contenttypes", "ContentType")
    PermissionOld = old.get_model("auth", "Permission")
    institution = old.get_model("platform_core", "Institution").objects.create(slug="h", name="Hospital")
    user = old.get_model("platform_core", "User").objects.create(username="dm", email="dm@example.org")
    campaign = old.get_model("platform_core", "Campaign").objects.create(
        institution=institution, slug="lungs", name="Lungs", label_schema={"labels": ["lesion"]}
    )
    job = old.get_model("platform_core", "ImportJob").objects.create(
        institution=institution,
        campaign=campaign,
        created_by=user,
        source="upload:lungs.zip",
        status="done",
        progress=1.0,
        report=REPORT,
        options={"import_incomplete": True},
    )
    # 0003 sealed the secrets; at 0004 only the sealed column exists.
    remote = old.get_model("platform_core", "RemotePacs").objects.create(
        institution=institution,
        name="Radiology PACS",
        dicomweb_url="http://pacs.example.org/dicom-web",
        auth_type="basic",
        username="curatect",
        secret_sealed=sealing.seal(SECRET),
        pull_campaign=campaign,
        pull_filter={"Modality": "CT"},
    )
    pulled = old.get_model("platform_core", "PulledStudy").objects.create(
        remote=remote, study_uid="1.2.840.1", status="done", import_job=job
    )

    # The content types and permissions of the old app (post_migrate made them when the test
    # database was built; get_or_create keeps this true whatever ran before).
    cts = {
        model: ContentTypeOld.objects.get_or_create(app_label="platform_core", model=model)[0]
        for model in MOVED
    }
    view_import = PermissionOld.objects.get_or_create(
        content_type=cts["importjob"], codename="view_importjob", defaults={"name": "Can view import job"}
    )[0]
    change_remote = PermissionOld.objects.get_or_create(
        content_type=cts["remotepacs"],
        codename="change_remotepacs",
        defaults={"name": "Can change remote pacs"},
    )[0]
    user.user_permissions.add(view_import, change_remote)
    log = old.get_model("admin", "LogEntry").objects.create(
        user=user,
        content_type=cts["remotepacs"],
        object_id=str(remote.pk),
        object_repr=remote.name,
        action_flag=ADDITION,
    )
    return {
        "institution": institution.pk,
        "user": user.pk,
        "campaign": campaign.pk,
        "job": job.pk,
        "remote": remote.pk,
        "pulled": pulled.pk,
        "cts": {model: ct.pk for model, ct in cts.items()},
        "permissions": {view_import.pk, change_remote.pk},
        "log": log.pk,
    }


@pytest.mark.django_db(transaction=True)
def test_a_database_at_the_head_before_the_split_migrates_with_no_row_lost_and_back():
    try:
        executor = migrate(BEFORE)
        old = models_at(executor, BEFORE)
        tables_before = tables()
        made = create_at_the_old_head(old)
        cts_before = content_types()

        # Half way: post_migrate after `migrate imaging` makes a fresh imaging.importjob content
        # type (with its permission) that the pacs migration must drop in favour of the old one.
        executor = migrate(IMAGING_ONLY)
        middle = models_at(executor, [*IMAGING_ONLY, ("admin", "0003_logentry_add_action_flag_choices")])
        duplicate = middle.get_model("contenttypes", "ContentType").objects.create(
            app_label="imaging", model="importjob"
        )
        middle.get_model("auth", "Permission").objects.create(
            content_type=duplicate, codename="view_importjob", name="Can view import job"
        )
        job_halfway = middle.get_model("imaging", "ImportJob").objects.values("report").get(pk=made["job"])

        executor = migrate(executor.loader.graph.leaf_nodes())
        new = models_at(executor, executor.loader.graph.leaf_nodes())
        tables_after = tables()
        cts_after = content_types()

        # Through the new apps' historical models.
        new_job = new.get_model("imaging", "ImportJob").objects.get(pk=made["job"])
        new_remote = new.get_model("pacs", "RemotePacs").objects.get(pk=made["remote"])
        new_pulled = new.get_model("pacs", "PulledStudy").objects.get(pk=made["pulled"])
        historical = {
            "job": (new_job.institution_id, new_job.campaign_id, new_job.created_by_id, new_job.report),
            "remote": (new_remote.institution_id, new_remote.pull_campaign_id, new_remote.secret_sealed),
            "pulled": (new_pulled.remote_id, new_pulled.import_job_id, new_pulled.study_uid),
        }

        # Through the current models, as the application reads them.
        ContentType.objects.clear_cache()
        job = ImportJob.objects.select_related("institution", "campaign", "created_by").get(pk=made["job"])
        remote = RemotePacs.objects.get(pk=made["remote"])
        pulled = PulledStudy.objects.select_related("remote", "import_job").get(pk=made["pulled"])
        institution = Institution.objects.get(pk=made["institution"])
        user = User.objects.get(pk=made["user"])
        current = {
            "job": (job.institution.slug, job.campaign.slug, job.created_by.username, job.status),
            "job_values": (job.source, job.progress, job.report, job.options),
            "remote": (remote.name, remote.auth_type, remote.username, remote.secret_value()),
            "remote_links": (remote.institution_id, remote.pull_campaign_id, remote.pull_filter),
            "pulled": (pulled.remote.pk, pulled.import_job.pk, pulled.import_job.report),
            "reverse": (
                list(institution.imports.values_list("pk", flat=True)),
                list(institution.remote_pacs.values_list("pk", flat=True)),
                list(remote.pulled_studies.values_list("pk", flat=True)),
                Campaign.objects.filter(pk=made["campaign"]).exists(),
            ),
        }
        ct_of = {
            "importjob": ContentType.objects.get_for_model(ImportJob).pk,
            "remotepacs": ContentType.objects.get_for_model(RemotePacs).pk,
            "pulledstudy": ContentType.objects.get_for_model(PulledStudy).pk,
        }
        perms = (user.has_perm("imaging.view_importjob"), user.has_perm("pacs.change_remotepacs"))
        kept_permissions = set(user.user_permissions.values_list("pk", flat=True))
        logged = LogEntry.objects.get(pk=made["log"]).get_edited_object()
        duplicate_left = Permission.objects.filter(content_type_id=duplicate.pk).exists()

        # Backwards: the old app holds the models (and their content types) again.
        migrate(BEFORE)
        back_cts = content_types()
        back_job = old.get_model("platform_core", "ImportJob").objects.get(pk=made["job"])
        back_pulled = old.get_model("platform_core", "PulledStudy").objects.get(pk=made["pulled"])
        back = (back_job.report, back_pulled.import_job_id, back_pulled.remote_id)
        back_secret = sealing.unseal(
            old.get_model("platform_core", "RemotePacs").objects.get(pk=made["remote"]).secret_sealed
        )
    finally:
        migrate_to_latest()
        ContentType.objects.clear_cache()

    # No table made, dropped or renamed: the move is Django's picture only.
    # (federation, #15, came after the split: its tables are new at the head, not moved.)
    assert {t for t in tables_after if not t.startswith("federation_")} == tables_before
    assert {
        "platform_core_importjob",
        "platform_core_remotepacs",
        "platform_core_pulledstudy",
    } <= tables_after
    assert job_halfway == {"report": REPORT}

    assert historical == {
        "job": (made["institution"], made["campaign"], made["user"], REPORT),
        "remote": (made["institution"], made["campaign"], new_remote.secret_sealed),
        "pulled": (made["remote"], made["job"], "1.2.840.1"),
    }
    assert new_remote.secret_sealed and SECRET not in new_remote.secret_sealed
    assert current == {
        "job": ("h", "lungs", "dm", ImportJob.Status.DONE),
        "job_values": ("upload:lungs.zip", 1.0, REPORT, {"import_incomplete": True}),
        "remote": ("Radiology PACS", RemotePacs.Auth.BASIC, "curatect", SECRET),
        "remote_links": (made["institution"], made["campaign"], {"Modality": "CT"}),
        "pulled": (made["remote"], made["job"], REPORT),
        "reverse": ([made["job"]], [made["remote"]], [made["pulled"]], True),
    }

    # Content types moved app with their ids, so permissions and admin log entries follow.
    assert cts_before == {model: (made["cts"][model], "platform_core") for model in MOVED}
    assert cts_after == {model: (made["cts"][model], app) for model, app in MOVED.items()}
    assert ct_of == made["cts"]
    assert perms == (True, True) and kept_permissions == made["permissions"]
    assert isinstance(logged, RemotePacs) and logged.pk == made["remote"]
    assert not duplicate_left  # the half-way duplicate went, with its permission

    assert back_cts == cts_before
    assert back == (REPORT, made["job"], made["remote"])
    assert back_secret == SECRET
