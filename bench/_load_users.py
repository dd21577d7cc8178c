"""The Locust side of bench/load.py: the reading room's people, headless, against HOST.

    _load_users.py WORK HOST SECONDS

Reads WORK/plan.json (bench/_load_django.py seed), runs every person for SECONDS, and writes
WORK/driver.json (timings per group, request and error counts) and WORK/saves.jsonl (one line
per 2xx save, for bench/_load_django.py verify). Each person calls what the browser calls
(frontend/src/api/*.ts, viewer/session.ts, tools/regionGrow.ts), logged in by the login form with
the session cookie and the CSRF token, as the browser is.

Locust imports gevent and monkey-patches the standard library; nothing of Django is imported here.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import random
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import gevent
import numpy as np
import zstandard
from gevent.pool import Group
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

WORK = Path(sys.argv[1])
HOST = sys.argv[2]
SECONDS = float(sys.argv[3])
PLAN = json.loads((WORK / "plan.json").read_text())
CAMPAIGN = PLAN["campaign_id"]
SEEDS = PLAN["lesion_seeds"]
EDITABLE = {"not_started", "in_progress", "needs_revision"}
# What frontend/src/api/dicomweb.ts asks the DICOMweb server for frames.
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DIAGNOSES = ["COVID-19", "other pulmonary infection", "no imaging signs of infection"]

# Per group: [seconds since the start, milliseconds, request id] of every successful request.
timings: dict[str, list[list]] = {}
failures: list[str] = []
saves_log = (WORK / "saves.jsonl").open("w")
started = time.monotonic()


def record(group: str, ms: float, request_id: str | None = None) -> None:
    row = [round(time.monotonic() - started, 2), round(ms, 2), request_id]
    timings.setdefault(group, []).append(row)


_request_ids = itertools.count(1)


def think(low: float, high: float) -> None:
    # The shift ends between two actions, never inside one: a save the server stored is a save
    # the client saw answered (runner.quit() alone cut requests short: revisions stored > seen).
    if time.monotonic() - started >= SECONDS:
        raise StopUser
    gevent.sleep(random.uniform(low, high))


class Person(FastHttpUser):
    abstract = True
    host = HOST
    wait_time = constant(0)
    # The viewer opens a scan with four parallel frame streams besides its JSON calls.
    concurrency = 8
    network_timeout = 120.0
    connection_timeout = 30.0
    group = ""

    def on_start(self) -> None:
        self.person = PLAN["people"][self.group].pop(0)
        self.login()

    # --- HTTP as frontend/src/api/http.ts does it --------------------------------------------

    def csrf(self) -> str:
        return next((c.value for c in self.client.cookiejar if c.name == "csrftoken"), "")

    def login(self) -> None:
        self.client.get("/login/", name="login")
        body = urlencode(
            {
                "csrfmiddlewaretoken": self.csrf(),
                "username": self.person["username"],
                "password": self.person["password"],
            }
        )
        with self.client.post(
            "/login/",
            data=body,
            name="login",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            catch_response=True,
        ) as r:
            if r.status_code != 302:
                r.failure(f"login of {self.person['username']} answered {r.status_code}")
                raise RuntimeError(f"login of {self.person['username']} failed")

    def call(
        self,
        method: str,
        path: str,
        group: str,
        body: object = None,
        headers: dict | None = None,
        accept: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ):
        """One request, timed under `group`; the response when its status is in `ok`, else None."""
        # Matches this wait to the serving thread's record (bench/_load_gunicorn.py).
        request_id = f"{self.person['username']}-{next(_request_ids)}"
        h = {"Accept": accept, "X-Request-Id": request_id, **(headers or {})}
        data = None
        if method != "GET":
            h["X-CSRFToken"] = self.csrf()
            h["Content-Type"] = "application/json"
            data = json.dumps(body if body is not None else {})
        t0 = time.perf_counter()
        with self.client.request(method, path, name=group, data=data, headers=h, catch_response=True) as r:
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code not in ok:
                error = getattr(r, "error", None) or r.request_meta.get("exception")
                reason = f"{method} {path} -> {r.status_code} {(r.text or '')[:200]} {error or ''}".strip()
                r.failure(reason)
                failures.append(reason)
                return None
            record(group, ms, request_id)
            r.success()
            return r

    # --- opening a scan as viewer/viewer.ts does -----------------------------------------------

    def open_scan(self, scan_id: int, revision: int | None = None, annotation: bool = True) -> dict | None:
        """Scan, campaign, series metadata, every frame in four streams, the annotation and labels."""
        t0 = time.perf_counter()
        scan = self.call("GET", f"/api/scans/{scan_id}/", "scan")
        if scan is None:
            return None
        scan = scan.json()
        series = f"/dicomweb/studies/{scan['study_uid']}/series/{scan['series_uid']}"
        results: dict[str, object] = {}
        jobs = frame_jobs(int(scan["slices"]))
        group = Group()
        group.spawn(
            lambda: results.__setitem__(
                "campaign", self.call("GET", f"/api/campaigns/{CAMPAIGN}/", "campaign")
            )
        )
        group.spawn(
            lambda: results.__setitem__(
                "metadata",
                self.call("GET", f"{series}/metadata", "metadata", accept="application/dicom+json"),
            )
        )
        for _ in range(4):
            group.spawn(self.frame_stream, series, jobs, results)
        path = f"/api/campaigns/{CAMPAIGN}/scans/{scan_id}/annotation/"
        if annotation:
            results["annotation"] = self.call("GET", path, "annotation")
        labels = path + "labels/" + (f"?revision={revision}" if revision else "")
        results["labels"] = self.call(
            "GET", labels, "labels", accept="application/octet-stream, */*;q=0.5", ok=(200, 404)
        )
        group.join()
        if any(v is None for k, v in results.items() if k != "labels") or results.get("frames_failed"):
            return None
        record("open_scan", (time.perf_counter() - t0) * 1000)
        return {"scan": scan, "annotation": results["annotation"].json() if annotation else None}

    def frame_stream(self, series: str, jobs: list[tuple[int, int]], results: dict) -> None:
        while jobs:
            offset, count = jobs.pop(0)
            got = self.call(
                "GET", f"{series}/pixeldata?offset={offset}&count={count}", "frames", accept=FRAME_ACCEPT
            )
            if got is None:
                results["frames_failed"] = True


def frame_jobs(total: int, chunk: int = 32) -> list[tuple[int, int]]:
    """viewer/dicomweb.ts prefetchSeries: four frames at the middle, then chunks outward from it."""
    first = min(total, 4)
    start = max(0, total // 2 - first // 2)
    rest = [(o, min(chunk, total - o)) for o in range(start + first, total, chunk)]
    rest += [(o, min(chunk, start - o)) for o in range(0, start, chunk)]
    rest.sort(key=lambda j: abs(j[0] + j[1] / 2 - total / 2))
    return [(start, first), *rest]


class Annotator(Person):
    fixed_count = 20
    group = "annotator"

    @task
    def work(self) -> None:
        item = self.next_scan()
        if item is None:
            think(10, 20)  # nothing editable: the worklist page polls
            return
        opened = self.open_scan(item["scan_id"])
        if opened is None:
            think(5, 10)
            return
        if item["state"] == "needs_revision":
            self.call("GET", f"/api/campaigns/{CAMPAIGN}/scans/{item['scan_id']}/findings/", "findings")
        head = opened["annotation"]["head"]
        head_id = head["id"] if head else None
        labels = {"diagnosis": random.choice(DIAGNOSES)}
        for _ in range(random.randint(5, 10)):
            think(3, 8)  # scroll, window, look for the lesion
            box = self.grow(item["scan_id"])
            if box is None:
                continue
            think(1, 3)  # the viewer saves changed boxes every few seconds
            saved = self.save(item["scan_id"], head_id, box, labels)
            if saved is None:
                return  # a failed save: reopen, as the viewer's conflict banner asks
            head_id = saved
        think(2, 5)
        path = f"/api/campaigns/{CAMPAIGN}/scans/{item['scan_id']}/annotation/submit/"
        self.call("POST", path, "submit", body={}, headers={"If-Match": f'"rev-{head_id}"'})

    def next_scan(self) -> dict | None:
        got = self.call("GET", "/api/worklist/", "worklist")
        if got is None:
            return None
        for batch in got.json():
            for item in batch["items"]:
                if item["state"] in EDITABLE:
                    return item
        return None

    def grow(self, scan_id: int) -> tuple[list[int], np.ndarray] | None:
        """One region-growing click at a lesion voxel; the box to save (the mask in its class)."""
        seed = random.choice(SEEDS)
        body = {"seed": seed, "tolerance": 120, "radius_mm": 40, "connectivity": 6}
        got = self.call("POST", f"/api/campaigns/{CAMPAIGN}/scans/{scan_id}/region-grow/", "grow", body=body)
        if got is None:
            return None
        out = got.json()
        value = random.choice([1, 2])
        if out["voxels"] == 0:  # nothing grew: a brush dab of 9 × 9 pixels instead
            z, y, x = seed
            return [z, max(0, y - 4), max(0, x - 4)], np.full((1, 9, 9), value, np.uint8)
        raw = zstandard.ZstdDecompressor().decompress(base64.b64decode(out["data"]))
        mask = np.frombuffer(raw, np.uint8).reshape(out["shape"])
        return list(out["offset"]), (mask > 0).astype(np.uint8) * value

    def save(
        self, scan_id: int, parent: int | None, box: tuple[list[int], np.ndarray], labels: dict
    ) -> int | None:
        offset, data = box
        payload = {
            "scan_labels": labels,
            "time_spent_s": round(random.uniform(5, 15), 1),
            "boxes": [
                {
                    "offset": offset,
                    "shape": list(data.shape),
                    "encoding": "gzip",
                    "data": base64.b64encode(gzip.compress(data.tobytes(), 6)).decode("ascii"),
                }
            ],
        }
        headers = {"If-Match": f'"rev-{parent}"'} if parent is not None else {}
        if parent is None:
            payload["parent_id"] = None
        got = self.call(
            "POST",
            f"/api/campaigns/{CAMPAIGN}/scans/{scan_id}/annotation/revisions/",
            "save",
            payload,
            headers,
        )
        if got is None:
            return None
        revision_id = int(got.json()["id"])
        entry = {
            "scan_id": scan_id,
            "revision_id": revision_id,
            "parent_id": parent,
            "user_id": self.person["id"],
            "offset": offset,
            "shape": list(data.shape),
            "box_sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        }
        saves_log.write(json.dumps(entry) + "\n")
        saves_log.flush()
        return revision_id


class Checker(Person):
    fixed_count = 8
    group = "checker"
    queue, detail, verdict_path, pass_share = (
        "/api/qc/checks/",
        "/api/qc/checks/{}/",
        "/api/qc/checks/{}/verdict/",
        0.8,
    )

    @task
    def work(self) -> None:
        got = self.call("GET", self.queue, "queue")
        items = got.json() if got is not None else []
        if not items:
            think(10, 20)
            return
        item = random.choice(items[:3])
        got = self.call("GET", self.detail.format(item["id"]), "check")
        if got is None:
            return
        check = got.json()
        scan_id = item["scan_id"]
        revision = (item.get("revision") or check.get("revision") or {}).get("id")
        if self.open_scan(scan_id, revision=revision, annotation=False) is None:
            return
        think(20, 45)  # reading the labels slice by slice
        z, y, x = random.choice(SEEDS)
        if random.random() < self.pass_share:
            body = {"verdict": "pass", "findings": [], "time_spent_s": 30.0}
        else:
            finding = {"slice": z, "position": [x, y], "kind": "boundary", "text": "the edge leaks here"}
            body = {"verdict": "fail", "findings": [finding], "time_spent_s": 40.0}
        self.call("POST", self.verdict_path.format(item["id"]), "verdict", body=body)


class Senior(Checker):
    fixed_count = 2
    group = "senior"
    queue, detail = "/api/qc/spot-checks/", "/api/qc/spot-checks/{}/"
    verdict_path, pass_share = "/api/qc/spot-checks/{}/verdict/", 0.95


class Manager(Person):
    fixed_count = 1
    group = "manager"

    def on_start(self) -> None:
        super().on_start()
        self.export_id: int | None = None
        self.export_status = "not started: no batch was approved in time"

    @task
    def work(self) -> None:
        got = self.call("GET", f"/api/campaigns/{CAMPAIGN}/batches/", "batches")
        batches = got.json() if got is not None else []
        approved = False
        # Last week's approved batch first (bench/_load_django.py seeds it), then a few others.
        earlier = [b for b in batches if b["id"] == PLAN["curated_batch"]]
        for batch in earlier + random.sample(batches, min(3, len(batches))):
            board = self.call("GET", f"/api/batches/{batch['id']}/board/", "board")
            if board is not None and board.json()["review"]["state"] == "approved":
                approved = True
            think(3, 8)
        self.call("GET", f"/api/qc/metrics/?campaign={CAMPAIGN}", "dashboard")
        think(5, 10)
        if approved and self.export_id is None:
            # 202: the export is queued for the Celery worker (what the API answers).
            got = self.call("POST", f"/api/campaigns/{CAMPAIGN}/exports/", "export", body={}, ok=(201, 202))
            if got is not None:
                self.export_id = got.json()["id"]
                self.export_status = got.json()["status"]
                Manager.last_export = {"id": self.export_id, "status": self.export_status}
        if self.export_id is not None and self.export_status not in ("done", "failed"):
            got = self.call("GET", f"/api/exports/{self.export_id}/", "export_status")
            if got is not None:
                self.export_status = got.json()["status"]
                Manager.last_export = {"id": self.export_id, "status": self.export_status}


Manager.last_export = None
for _cls in (Annotator, Checker, Senior, Manager):
    _cls.fixed_count = len(PLAN["people"][_cls.group])


# How long the last people may take to finish what they were doing when the shift ends.
FINISH_S = 120


def _end_of_shift(runner) -> None:
    gevent.sleep(SECONDS)
    deadline = time.monotonic() + FINISH_S
    while runner.user_count and time.monotonic() < deadline:
        gevent.sleep(0.5)
    runner.quit()


def main() -> None:
    env = Environment(user_classes=[Annotator, Checker, Senior, Manager], events=events, host=HOST)
    runner = env.create_local_runner()
    users = Annotator.fixed_count + Checker.fixed_count + Senior.fixed_count + Manager.fixed_count
    # Everyone arrives within half a minute, as a shift does; never all in the same instant.
    runner.start(users, spawn_rate=users / 30)
    gevent.spawn(_end_of_shift, runner)
    runner.greenlet.join()
    saves_log.close()
    total = env.stats.total
    out = {
        "users": users,
        "requests": total.num_requests,
        "errors": total.num_failures,
        "timings": timings,
        "failures": failures[:20],
        "export": Manager.last_export or {"id": None, "status": "not started: no batch was approved in time"},
        "seconds": round(time.monotonic() - started, 1),
    }
    # The driver shares the cores with the stack it measures: its CPU is what the stack lacked.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["driver_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    (WORK / "driver.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
