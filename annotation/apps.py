from django.apps import AppConfig


def _labels_tmp_sweep_after_jobs(sender: object = None, **kwargs: object) -> None:
    """After a job sweep (worker start, periodic): a process killed while it stored a label
    volume (a worker, or the web process saving a revision) left its temporary file."""
    from annotation.storage import labels_tmp_sweep

    labels_tmp_sweep()


class AnnotationConfig(AppConfig):
    name = "annotation"

    def ready(self) -> None:
        from core.jobs.signals import jobs_swept

        jobs_swept.connect(
            _labels_tmp_sweep_after_jobs, dispatch_uid="annotation.labels_tmp_sweep_after_jobs"
        )
