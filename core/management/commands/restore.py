"""manage.py restore DIR"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.backup import SECRET_KEY_FILE, BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup made by manage.py backup into this site's database and MEDIA_ROOT, which "
        "must be empty (a new database, a new data folder): anything else is refused. Every file "
        "of the backup is checked against its manifest first. Afterwards run manage.py migrate "
        "(if the code is newer) and manage.py verify_storage, then start the platform."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("dir", type=Path)

    def handle(self, *args, dir: Path, **opts):
        try:
            manifest = backup_restore(dir)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        stored = sum(k.startswith("media/") for k in manifest["files"])
        self.stdout.write(
            f"restored the database and {stored} stored files from {dir} (made {manifest['created_at']})"
        )
        if SECRET_KEY_FILE in manifest["files"]:
            self.stdout.write(f"the site's secret key is back in {settings.DATA_DIR / SECRET_KEY_FILE}")
