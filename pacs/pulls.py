"""Pulls from a remote PACS: a data manager's pick, or the periodic query for new CT studies.

One ImportJob per pull: WADO-RS retrieval (dicomweb-client) into a spool folder, each instance
prepared (pseudonymised) while the next ones stream in, then grouped, checked and stored by the
ingest service. PulledStudy rows remember what was asked of which PACS, so the periodic pull
never fetches a study twice.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.api_errors import DomainError
from core.jobs.services import job_claim, job_fail, job_finish, job_progress, job_requeue
from core.models import Campaign, User
from core.services.audit import audit_record
from imaging.ingest.reader import prepare_or_reason
from imaging.ingest.store import pseudonym_key
from imaging.models import ImportJob
from pacs import intake
from pacs import remote as pacs
from pacs.models import PulledStudy, RemotePacs
from pacs.services import send_task_on_commit
from pacs.workers import prepare_pool

logger = logging.getLogger(__name__)

PULL_TASK = "pacs.tasks.pull_run"


def pull_start(
    *,
    actor: User | None,
    remote: RemotePacs,
    study_uids: list[str],
    campaign: Campaign | None = None,
    trigger: str = "manual",
) -> ImportJob:
    """Queue the import of studies of a remote PACS (WADO-RS retrieve → spool → ingest)."""
    uids = list(dict.fromkeys(u.strip() for u in study_uids if u and u.strip()))
    if not uids:
        raise DomainError("pick at least one study", code="no_studies")
    if len(uids) > 500:
        raise DomainError("at most 500 studies per pull; split the selection", code="too_many")
    if campaign is not None and campaign.institution_id != remote.institution_id:
        raise DomainError("the campaign must belong to the PACS's institution", code="invalid")
    with transaction.atomic():
        job = intake.job_create(
            institution=remote.institution,
            campaign_id=campaign.pk if campaign else None,
            actor=actor,
            source=f"DICOMweb pull from {remote.name} ({trigger}): {len(uids)} stud{'y' if len(uids) == 1 else 'ies'}",
        )
        for uid in uids:
            _study_request(remote, uid, job)
        audit_record(
            actor=actor,
            action="pacs_pull",
            obj=job,
            to_state=job.status,
            remote=remote.name,
            studies=len(uids),
            trigger=trigger,
        )
        send_task_on_commit(PULL_TASK, job.pk)
    return job


def _study_request(remote: RemotePacs, uid: str, job: ImportJob) -> None:
    """Queue a study for `job`: a new row, or one pulled (or being pulled) before, requested again."""
    study, created = PulledStudy.objects.get_or_create(
        remote=remote, study_uid=uid, defaults={"import_job": job}
    )
    if created:
        return
    if study.status == PulledStudy.Status.QUEUED or not job_requeue(
        study,
        from_states=[PulledStudy.Status.RUNNING, PulledStudy.Status.DONE, PulledStudy.Status.FAILED],
        import_job=job,
        detail="",
    ):
        PulledStudy.objects.filter(pk=study.pk).update(import_job=job, detail="")


def pull_run(job: ImportJob, progress: intake.Progress | None = None) -> ImportJob:
    """Retrieve the job's studies into a spool folder and ingest them. Instances are prepared
    (pseudonymised) as they arrive, overlapping the retrieval. Safe to run again."""
    studies = list(PulledStudy.objects.filter(import_job=job).select_related("remote__institution"))
    if not studies:
        return intake.job_finish(
            job,
            status=ImportJob.Status.FAILED,
            report={**intake.empty_report(), "error": "no studies to pull"},
        )
    remote = studies[0].remote
    if not intake.job_running(job):
        return job
    job_progress(job, 0.0)
    for study in studies:  # a redelivered task starts over: every study is pulled again
        if study.status != PulledStudy.Status.QUEUED:
            job_requeue(
                study,
                from_states=[PulledStudy.Status.RUNNING, PulledStudy.Status.DONE, PulledStudy.Status.FAILED],
                detail="",
            )
    folder = intake.spool_root() / f"pull-{job.pk}"
    shutil.rmtree(folder, ignore_errors=True)  # a redelivered task starts over
    folder.mkdir(parents=True)
    staging = intake.staging_folder()
    pool = prepare_pool(settings.INGEST_WORKERS)
    try:
        puller = _Puller(remote, job, folder, staging, pool, progress)
        summary = puller.retrieve_all(studies)
        extra = {"pull": {"remote": remote.name, "studies": summary}}
        if not puller.futures:
            report = {
                **intake.empty_report(),
                **extra,
                "error": "nothing could be retrieved: "
                + "; ".join(s["error"] for s in summary if s["error"]),
            }
            return intake.job_finish(job, status=ImportJob.Status.FAILED, report=report)
        results = [future.result() for future in puller.futures]
        finished = intake.job_run_prepared(
            job, results, origins=puller.origins, origin_source="dicomweb", extra=extra
        )
        puller.studies_finish()
        return finished
    except Exception as exc:  # never leave a pull "running" forever
        logger.exception("pull %s failed", job.pk)
        report = {
            **intake.empty_report(),
            "error": f"the pull failed unexpectedly ({exc.__class__.__name__}: {exc})",
        }
        return intake.job_finish(job, status=ImportJob.Status.FAILED, report=report)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        for study in studies:  # none stays running when the pull ended some other way
            job_fail(
                study, "its pull ended before the study was stored; pull it again", from_states=["running"]
            )


class _Puller:
    """Retrieves studies series by series, handing each instance to the prepare pool."""

    def __init__(self, remote: RemotePacs, job: ImportJob, folder, staging, pool, progress) -> None:
        self.remote, self.job, self.folder, self.pool, self.progress = remote, job, folder, pool, progress
        self.prepare = partial(
            prepare_or_reason, staging=staging, key=pseudonym_key(), issuer_prefix=remote.institution.slug
        )
        self.futures: list = []
        self.retrieved: list[tuple[PulledStudy, str]] = []
        self.origins: dict[str, intake.OriginalSeries] = {}
        self.total = 1

    def retrieve_all(self, studies: list[PulledStudy]) -> list[dict]:
        plans = []
        for study in studies:
            try:
                series = pacs.search_series(self.remote, study.study_uid, {"Modality": "CT"})
            except pacs.RemoteError as exc:
                plans.append((study, [], str(exc)))
                continue
            plans.append((study, series, "" if series else "the study has no CT series on the PACS"))
        self.total = sum(_count(s) for _, series, _ in plans for s in series) or 1
        summary = []
        try:
            client = pacs.client_for(self.remote)
        except pacs.RemoteError as exc:  # e.g. the URL was removed, or the secret cannot be read
            plans = [(study, [], error or str(exc)) for study, _, error in plans]
            client = None
        # Every study is claimed (running, on this job's node) before any is retrieved: if the
        # worker dies, the sweep at its restart fails each with the reason, none stays queued.
        plans = [plan for plan in plans if job_claim(plan[0], worker=self.job.worker)]
        for study, series, error in plans:
            entry = {"study_uid": study.study_uid, "series": 0, "instances": 0, "error": error}
            for item in series:
                series_uid = item.get("0020000E", {}).get("Value", [""])[0]
                target = self.folder / f"{len(summary):04d}" / series_uid[-24:]
                try:
                    entry["instances"] += pacs.retrieve_series_to(
                        self.remote,
                        study.study_uid,
                        series_uid,
                        target,
                        on_instance=self.arrived,
                        client=client,
                    )
                    entry["series"] += 1
                except pacs.RemoteError as exc:
                    entry["error"] = str(exc)
            if entry["instances"] > 0:  # done once ingested (studies_finish): until then running
                self.retrieved.append((study, entry["error"]))
            else:
                job_fail(
                    study, str(entry["error"] or "nothing was retrieved"), audit={"import_job": self.job.pk}
                )
            summary.append(entry)
        return summary

    def studies_finish(self) -> None:
        """The retrieved studies are done once the ingest of what they brought has ended."""
        for study, detail in self.retrieved:
            job_finish(study, detail=detail)

    def arrived(self, path, ds) -> None:
        series_uid = str(ds.get("SeriesInstanceUID", ""))
        origin = self.origins.get(series_uid)
        if origin is None:
            origin = self.origins[series_uid] = intake.OriginalSeries(
                study_uid=str(ds.get("StudyInstanceUID", "")),
                series_uid=series_uid,
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
                header={k: str(ds.get(k, "") or "") for k in intake.ORIGIN_HEADER_KEYWORDS if ds.get(k)},
            )
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        origin.sop_uids.add(sop_uid)
        self.futures.append(self.pool.submit(self.prepare, (path, f"instance {sop_uid}")))
        done = len(self.futures)
        if done % 10 == 0 or done == self.total:
            fraction = 0.5 * min(done / self.total, 1.0)
            job_progress(self.job, fraction)
            if self.progress:
                self.progress(fraction, f"retrieved {done} of {self.total} instances")


def _count(series_json: dict) -> int:
    try:
        return int(series_json.get("00201209", {}).get("Value", [0])[0])
    except (TypeError, ValueError, IndexError):
        return 0


def pull_periodic(now=None) -> list[int]:
    """For each remote PACS due for its periodic pull: search new CT studies, queue their import."""
    now = now or timezone.now()
    jobs = []
    for remote in RemotePacs.objects.filter(pull_interval_minutes__gt=0).select_related("institution"):
        if (
            remote.last_pull_at
            and remote.last_pull_at + timedelta(minutes=remote.pull_interval_minutes) > now
        ):
            continue
        RemotePacs.objects.filter(pk=remote.pk).update(last_pull_at=now)
        filters = {"ModalitiesInStudy": "CT", **(remote.pull_filter or {})}
        try:
            found = pacs.search_studies(remote, filters, limit=200, get_remaining=True)
        except pacs.RemoteError as exc:
            logger.warning("periodic pull from %s: %s", remote.name, exc)
            continue
        uids = [s.get("0020000D", {}).get("Value", [""])[0] for s in found][:1000]
        known = set(
            PulledStudy.objects.filter(remote=remote, study_uid__in=uids).values_list("study_uid", flat=True)
        )
        new = [u for u in uids if u and u not in known]
        if new:
            jobs.append(
                pull_start(
                    actor=None,
                    remote=remote,
                    study_uids=new,
                    campaign=remote.pull_campaign,
                    trigger="periodic",
                ).pk
            )
    return jobs
