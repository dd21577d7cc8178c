"""Runs coordinated by another installation (a participant copy made from an invitation) and a
key per site that its ClientApp names itself by. Sites that exist already get a key each (a
field default would give them all the same one)."""

import uuid

from django.db import migrations, models


def _site_keys(apps, schema_editor) -> None:
    FederationSite = apps.get_model("federation", "FederationSite")
    for site in FederationSite.objects.filter(key__isnull=True).only("pk"):
        FederationSite.objects.filter(pk=site.pk).update(key=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("federation", "0001_federation_runs_sites_rounds")]

    operations = [
        migrations.AddField(
            model_name="federationrun",
            name="is_remote",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="federationrun",
            name="coordinator_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="federationrun",
            name="invitation_issued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="federationsite",
            name="key",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(_site_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="federationsite",
            name="key",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
