// DICOM import (/manage/import/): upload files, a zip or a folder with upload progress
// (XMLHttpRequest), then follow the import job (GET /api/imports/{id}/) to its per-file and
// per-series report. The job id stays in the address (#job=…), so a reload keeps watching.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage } from "../api/http";
import { manageApi, type ImportJob, type ImportReport } from "../api/manage";
import { bytes, byId, el, say, table } from "../panels/dom";
import { poll, ProgressView } from "../panels/jobProgress";

const form = byId<HTMLFormElement>("import-form");
const filesInput = byId<HTMLInputElement>("import-files");
const folderInput = byId<HTMLInputElement>("import-folder");
const selection = byId("import-selection");
const notice = byId("import-notice");
const submit = byId<HTMLButtonElement>("import-submit");
const cancel = byId<HTMLButtonElement>("import-cancel");
const status = byId("import-status");
const progressBox = byId("import-progress");
const reportBox = byId("import-report");

function chosenFiles(): File[] {
  return [...(filesInput.files ?? []), ...(folderInput.files ?? [])];
}

function describeSelection(): void {
  const files = chosenFiles();
  const total = files.reduce((sum, f) => sum + f.size, 0);
  selection.textContent = files.length
    ? `${files.length} file${files.length === 1 ? "" : "s"} chosen, ${bytes(total)} in all.`
    : "No files chosen.";
}

function summary(report: ImportReport): HTMLElement {
  const created = report.scans_created ?? [];
  const existing = report.scans_existing ?? [];
  const rejectedFiles = report.rejected_files ?? [];
  const rejectedSeries = report.rejected_series ?? [];
  return el(
    "dl",
    { className: "summary", id: "import-summary" },
    el("dt", {}, "Files seen"),
    el("dd", {}, String(report.files_seen ?? 0)),
    el("dt", {}, "New scans"),
    el(
      "dd",
      { className: "scans-created" },
      created.length ? `${created.length} (ids ${created.join(", ")})` : "none",
    ),
    el("dt", {}, "Already stored"),
    el("dd", {}, existing.length ? `${existing.length} (ids ${existing.join(", ")})` : "none"),
    el("dt", {}, "Rejected series"),
    el("dd", {}, String(rejectedSeries.length)),
    el("dt", {}, "Rejected files"),
    el("dd", {}, String(rejectedFiles.length)),
  );
}

function renderReport(job: ImportJob): void {
  const report = job.report ?? {};
  if (job.status === "failed") {
    reportBox.replaceChildren(
      el(
        "p",
        { className: "error", attrs: { role: "alert" } },
        `The import could not run: ${report.error ?? "no reason was recorded"}. Nothing was stored.`,
      ),
    );
    return;
  }
  const parts: HTMLElement[] = [
    el("section", { className: "card" }, el("h3", {}, "Report"), summary(report)),
  ];
  if ((report.scans_created ?? []).length) {
    parts.push(
      el(
        "p",
        {},
        el(
          "a",
          { href: "/manage/batches/", className: "button" },
          "Build a batch from the new scans",
        ),
      ),
    );
  }
  const series = report.rejected_series ?? [];
  if (series.length) {
    parts.push(
      table(
        "Rejected series (nothing of these was stored)",
        ["Series", "Reason", "Files"],
        series.map((s) => [
          s.series,
          s.reason,
          `${s.files.slice(0, 5).join(", ")}${s.files.length > 5 ? ` and ${s.files.length - 5} more` : ""}`,
        ]),
        { className: "data rejected-series" },
      ),
    );
  }
  const files = report.rejected_files ?? [];
  if (files.length) {
    parts.push(
      table(
        "Rejected files",
        ["File", "Reason"],
        files.map((f) => [f.file, f.reason]),
        {
          className: "data rejected-files",
        },
      ),
    );
  }
  if (!series.length && !files.length)
    parts.push(el("p", { className: "notice notice-ok" }, "Every file was accepted."));
  reportBox.replaceChildren(...parts);
}

const JOB_TEXT: Record<ImportJob["status"], string> = {
  queued: "waiting for the ingest worker",
  running: "reading, checking and storing",
  done: "done",
  failed: "failed",
};

function watchJob(jobId: number, view?: ProgressView): void {
  const importView = view ?? new ProgressView(`Import ${jobId}`);
  if (!view) progressBox.replaceChildren(importView.root);
  status.hidden = false;
  reportBox.replaceChildren();
  history.replaceState(null, "", `#job=${jobId}`);
  const watch = poll(
    () => manageApi.importJob(jobId),
    (job) => {
      if (job.status === "done") importView.finish("ok", "done");
      else if (job.status === "failed") importView.finish("error", "failed");
      else
        importView.set(
          job.status === "queued" ? null : job.progress,
          `${Math.round(100 * job.progress)} % · ${JOB_TEXT[job.status]}`,
        );
    },
    (job) => job.status === "done" || job.status === "failed",
    1000,
  );
  watch.done.then(
    (job) => {
      renderReport(job);
      byId("import-status-heading").focus();
    },
    (error) => importView.finish("error", `cannot follow the import: ${errorMessage(error)}`),
  );
}

form.addEventListener("submit", async (evt) => {
  evt.preventDefault();
  const files = chosenFiles();
  if (!files.length) {
    say(notice, "Choose DICOM files, a .zip archive or a folder first.", "error");
    filesInput.focus();
    return;
  }
  const data = new FormData();
  for (const file of files) data.append("files", file, file.name);
  data.append("institution", byId<HTMLSelectElement>("import-institution").value);
  const campaign = byId<HTMLSelectElement>("import-campaign").value;
  if (campaign) data.append("campaign", campaign);

  const uploadView = new ProgressView("Upload");
  const importView = new ProgressView("Import");
  importView.set(0, "starts when the upload is complete");
  progressBox.replaceChildren(uploadView.root, importView.root);
  status.hidden = false;
  reportBox.replaceChildren();
  const total = files.reduce((sum, f) => sum + f.size, 0);
  uploadView.set(0, `0 of ${bytes(total)}`);
  say(notice, "");
  submit.disabled = true;
  cancel.hidden = false;
  const request = manageApi.startImport(data, ({ loaded, total: sent }) =>
    uploadView.set(loaded / sent, `${bytes(loaded)} of ${bytes(sent)}`),
  );
  cancel.onclick = () => request.abort();
  try {
    const job = await request.done;
    uploadView.finish("ok", `${bytes(total)} uploaded`);
    watchJob(job.id, importView);
    form.reset();
    describeSelection();
  } catch (error) {
    uploadView.finish("error", "not uploaded");
    importView.finish("error", "not started");
    say(notice, `The import did not start: ${errorMessage(error)}`, "error");
  } finally {
    submit.disabled = false;
    cancel.hidden = true;
  }
});

filesInput.addEventListener("change", describeSelection);
folderInput.addEventListener("change", describeSelection);
const resumed = window.location.hash.match(/job=(\d+)/);
if (resumed) watchJob(Number(resumed[1]));
