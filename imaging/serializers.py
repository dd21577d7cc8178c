"""How an import job is shown to API clients (the imports API and the PACS imports list)."""

from __future__ import annotations

from rest_framework import serializers

from imaging.models import ImportJob


class ImportOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    progress = serializers.FloatField(help_text="0..1")
    report = serializers.JSONField(help_text="what was stored and what was rejected, with reasons")
    options = serializers.JSONField(help_text='what was asked, e.g. {"import_incomplete": true}')
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


def import_out(job: ImportJob) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "progress": job.progress,
        "report": job.report,
        "options": job.options,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }
