"""manage.py backup DIR"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.backup import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Back up this site into DIR (new or empty): the database (SQLite's online backup, or "
        "pg_dump -Fc), a copy of MEDIA_ROOT, the embedded secret key when the site uses one, and "
        "manifest.json with the sha256 of every file. Safe while the platform runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("dir", type=Path)

    def handle(self, *args, dir: Path, **opts):
        try:
            manifest = backup_create(dir)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"backup of the {manifest['database']['vendor']} database and "
            f"{sum(k.startswith('media/') for k in manifest['files'])} stored files written to {dir}"
        )
