"""manage.py verify_storage [--strict] [--delete-orphans] [--grace SECONDS]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.storage_check import storage_check, storage_orphans_delete


class Command(BaseCommand):
    help = (
        "Check that every stored file (scan volumes and DICOM files, revision label blobs, export "
        "folders, model weights) exists and matches the sha256 its row holds, and list the files "
        "under MEDIA_ROOT that no row owns (orphans). One line per problem, then a summary. Exit 1 "
        "on any missing, mismatched or unreadable file; orphans alone exit 0 unless --strict. "
        "Orphans are never deleted unless --delete-orphans, and then only the listed ones older than "
        "--grace (names starting with '.', the platform's temporary names, after a day). Only "
        "MEDIA_ROOT is checked: the rest of the data folder (broker, cache, uploads, work, "
        "pacs-spool, testdata, staticfiles) is runtime or work space; the database and secret key "
        "are covered by manage.py backup."
    )

    def add_arguments(self, parser):
        parser.add_argument("--strict", action="store_true", help="exit 1 on orphans too")
        parser.add_argument(
            "--delete-orphans", action="store_true", help="delete the listed orphans (not recent ones)"
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=3600.0,
            help="seconds an orphan is considered a write in progress and kept (default 3600)",
        )

    def handle(self, *args, strict: bool, delete_orphans: bool, grace: float, **opts):
        if grace < 0:
            raise CommandError("--grace must be 0 or more seconds")
        report = storage_check(grace_s=grace)
        for problem in report.problems:
            line = problem.line() + (" [recent: kept]" if problem.recent else "")
            self.stdout.write(line)
        if delete_orphans:
            for rel in storage_orphans_delete(report):
                self.stdout.write(f"DELETED {rel}")
        self.stdout.write(report.summary())
        if report.damaged or (strict and report.orphans):
            raise CommandError(
                f"{len(report.damaged)} stored files are missing or damaged"
                + (f", {len(report.orphans)} orphans (--strict)" if strict and report.orphans else ""),
                returncode=1,
            )
