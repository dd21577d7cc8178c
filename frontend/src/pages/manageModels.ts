// Exports and models (/manage/models/): start a dataset export and watch it to its download;
// list model versions with their metrics and activate one (or go back to the baseline); start
// retraining and watch it live — progress, and loss and validation Dice per epoch.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage } from "../api/http";
import {
  manageApi,
  type DatasetExport,
  type ModelVersion,
  type ModelVersions,
  type TrainingRun,
  type TrainingRunIn,
} from "../api/manage";
import { chartFigure, xyFigure, type ChartFigure } from "../panels/charts";
import {
  badge,
  busy,
  bytes,
  byId,
  el,
  num,
  pageData,
  say,
  sayError,
  showLoadError,
  table,
  when,
} from "../panels/dom";
import { poll, ProgressView, type Poll } from "../panels/jobProgress";

interface CampaignChoice {
  id: number;
  slug: string;
  name: string;
}

const campaigns = pageData<CampaignChoice[]>("model-campaigns", []);
const campaignSelect = byId<HTMLSelectElement>("model-campaign");
byId("model-campaign-field").hidden = campaigns.length < 2;
const campaignId = () => Number(campaignSelect.value);

let exportWatches: Poll<DatasetExport>[] = [];
let runWatch: Poll<TrainingRun> | null = null;
let lossChart: ChartFigure | null = null;
let stagesChart: ChartFigure | null = null;

// --- exports ---------------------------------------------------------------------------------

function splitsText(e: DatasetExport): string {
  const s = e.summary?.splits;
  if (!s) return "—";
  const by = e.summary.split_method ? `, by ${e.summary.split_method}` : "";
  // PostgreSQL's jsonb hands keys back in its own order; a reader compares exports in one order.
  const order = ["train", "validation", "test"];
  const names = [
    ...order.filter((k) => k in s),
    ...Object.keys(s).filter((k) => !order.includes(k)),
  ];
  return `${e.summary.cases ?? 0} cases: ${names.map((k) => `${s[k]} ${k}`).join(", ")}${by}`;
}

function exportStatusCell(e: DatasetExport, refresh: () => void): Node {
  if (e.status === "done" || e.status === "failed") {
    return el(
      "span",
      { className: "stack" },
      badge(e.status),
      e.error ? el("span", { className: "error" }, e.error) : null,
    );
  }
  const view = new ProgressView(`Export ${e.id}`);
  view.set(e.status === "queued" ? null : e.progress, e.message || e.status);
  const watch = poll(
    () => manageApi.exportJob(e.id),
    (x) => view.set(x.status === "queued" ? null : x.progress, x.message || x.status),
    (x) => x.status === "done" || x.status === "failed",
    1500,
  );
  watch.done.then(refresh, (error) => view.finish("error", errorMessage(error)));
  exportWatches.push(watch);
  return view.root;
}

/** The zip's size (what the download is); an export published before it was counted says so. */
function downloadSize(e: DatasetExport): HTMLElement | string {
  const unpacked = e.summary?.bytes;
  if (e.archive_bytes !== null && e.archive_bytes !== undefined) {
    const title = unpacked !== undefined ? `${bytes(unpacked)} unpacked` : "";
    return el("span", { className: "download-size", title }, bytes(e.archive_bytes));
  }
  return unpacked !== undefined ? `${bytes(unpacked)} unpacked` : "—";
}

async function loadExports(): Promise<void> {
  const root = byId("exports");
  exportWatches.forEach((w) => w.stop());
  exportWatches = [];
  try {
    const rows = await manageApi.exports(campaignId());
    fillTrainExports(rows);
    if (!rows.length) {
      root.replaceChildren(el("p", { className: "muted" }, "No export yet."));
      return;
    }
    root.replaceChildren(
      table(
        "Dataset exports, newest first",
        // What the person downloads is the zip: its size, with the unpacked size as a tooltip.
        ["Version", "Status", "Content", "Download size", "SHA-256", "Made by", "Download"],
        rows.map((e) => [
          e.version ? `v${e.version}` : `job ${e.id}`,
          exportStatusCell(e, () => void loadExports()),
          splitsText(e),
          downloadSize(e),
          e.content_sha256
            ? el("code", { title: e.content_sha256 }, e.content_sha256.slice(0, 12))
            : "—",
          el("span", {}, e.created_by ?? "system", " · ", when(e.created_at)),
          e.download_url
            ? el(
                "a",
                { href: e.download_url, className: "button small", download: "" },
                "Download zip",
              )
            : "—",
        ]),
        { className: "data exports" },
      ),
    );
  } catch (error) {
    showLoadError(root, "Could not load the exports", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

function fillTrainExports(rows: DatasetExport[]): void {
  const select = byId<HTMLSelectElement>("train-export");
  const current = select.value;
  select.replaceChildren(
    el("option", { value: "" }, "a new export of the curated labels"),
    ...rows
      .filter((e) => e.status === "done")
      .map((e) =>
        el(
          "option",
          { value: String(e.id), selected: String(e.id) === current },
          `export v${e.version} (${splitsText(e)})`,
        ),
      ),
  );
}

// --- model versions ----------------------------------------------------------------------------

// The scan-level classifier's figures in a version's metrics (modelassist.classifier.metrics).
interface ClassifierFigures {
  classes: string[];
  cases: number;
  auc_per_class: Record<string, number | null>;
  auc_micro: number | null;
  auc_macro: number | null;
  positive_class: string;
  vs_rest: Record<"sensitivity" | "specificity" | "ppv" | "npv", number | null>;
  confusion_matrix: number[][];
}
interface ClassifierMetrics {
  trained: boolean;
  reason?: string;
  architecture?: string;
  candidate?: ClassifierFigures;
}

function classifierOf(v: ModelVersion): ClassifierMetrics | null {
  return ((v.metrics ?? {}) as { classifier?: ClassifierMetrics }).classifier ?? null;
}

function volumeR(v: ModelVersion): number | null {
  return (
    ((v.metrics ?? {}) as { lesion_volume?: { pearson_r: number | null } }).lesion_volume
      ?.pearson_r ?? null
  );
}

// One block per version with a classifier: Topff et al.'s figures and the confusion matrix.
function classifierDetails(v: ModelVersion): HTMLElement | null {
  const c = classifierOf(v);
  if (!c) return null;
  const summary = el("summary", {}, `Scan classifier of ${v.label}`);
  if (!c.trained || !c.candidate) {
    return el(
      "details",
      { className: "classifier" },
      summary,
      el("p", { className: "muted" }, c.reason ?? "not trained"),
    );
  }
  const f = c.candidate;
  const figures = table(
    `Classifier figures on ${f.cases} test scans`,
    ["Figure", "Value"],
    [
      ...f.classes.map((name) => [`AUC ${name} vs rest`, num(f.auc_per_class[name] ?? null, 3)]),
      ["AUC micro-average", num(f.auc_micro, 3)],
      ["AUC macro-average", num(f.auc_macro, 3)],
      [`Sensitivity (${f.positive_class} vs rest)`, num(f.vs_rest.sensitivity, 3)],
      [`Specificity (${f.positive_class} vs rest)`, num(f.vs_rest.specificity, 3)],
      [`PPV (${f.positive_class} vs rest)`, num(f.vs_rest.ppv, 3)],
      [`NPV (${f.positive_class} vs rest)`, num(f.vs_rest.npv, 3)],
      ["Pearson r, predicted vs curated lesion volume", num(volumeR(v), 3)],
    ],
    { className: "data classifier-figures" },
  );
  const matrix = table(
    "Confusion matrix: rows curated, columns predicted",
    ["Curated \\ predicted", ...f.classes],
    f.confusion_matrix.map((row, i) => [f.classes[i], ...row.map(String)]),
    { className: "data confusion-matrix" },
  );
  return el("details", { className: "classifier" }, summary, figures, matrix);
}

function metricCells(v: ModelVersion): string[] {
  const m = v.metrics ?? {};
  return [
    num(m.candidate?.mean ?? null, 3),
    num(m.candidate?.foreground ?? null, 3),
    num(m.best_val_dice ?? null, 3),
    m.test_cases === undefined ? "—" : String(m.test_cases),
    num(classifierOf(v)?.candidate?.auc_micro ?? null, 3),
  ];
}

// Each version's test figures against the curated scans it learned from (#14 §4): the learning
// curve of the campaign as its data grew.
function showStages(versions: ModelVersion[]): void {
  const root = byId("model-stages");
  stagesChart?.chart.destroy();
  stagesChart = null;
  const trained = versions.filter((v) => v.curated_scans !== null && v.curated_scans !== undefined);
  if (!trained.length) {
    root.replaceChildren(
      el("p", { className: "muted" }, "No version trained on an export yet: nothing to plot."),
    );
    return;
  }
  stagesChart = xyFigure({
    title: "Test figures against the number of curated scans",
    summary:
      "for each trained version, its mean lesion Dice and classifier micro-AUC on its test split, against the curated scans of the export it learned from",
    xTitle: "curated scans in the export it learned from",
    yTitle: "test figure (0–1)",
    seriesLabels: ["Test Dice (mean)", "Classifier micro-AUC"],
    rows: trained.map((v) => ({
      x: v.curated_scans!,
      label: `${v.label}: ${v.curated_scans} curated scans`,
      values: [v.metrics?.candidate?.mean ?? null, classifierOf(v)?.candidate?.auc_micro ?? null],
    })),
    format: (v) => num(v, 3),
    yMin: 0,
    yMax: 1,
  });
  root.replaceChildren(stagesChart.figure);
}

async function loadModels(): Promise<void> {
  const root = byId("models");
  const notice = byId("model-notice");
  const reason = () => byId<HTMLInputElement>("model-reason").value.trim();
  try {
    const data: ModelVersions = await manageApi.modelVersions(campaignId());
    const rows = data.versions.map((v) => {
      const action = v.is_active
        ? badge("active")
        : el(
            "button",
            {
              type: "button",
              className: "activate",
              attrs: { "aria-label": `Activate ${v.label}` },
            },
            "Activate",
          );
      if (action instanceof HTMLButtonElement) {
        action.addEventListener("click", () =>
          busy(action, async () => {
            try {
              const out = await manageApi.activateModel(v.id!, reason());
              say(notice, `${out.label} is now the active model.`, "ok");
              await loadModels();
            } catch (error) {
              sayError(notice, `${v.label} was not activated`, error);
            }
          }),
        );
      }
      return [
        el(
          "span",
          {},
          el("strong", {}, v.label),
          v.name && !v.label.includes(v.name)
            ? el("span", { className: "muted" }, ` ${v.name}`)
            : null,
        ),
        v.architecture,
        v.trained_on ? `export v${v.trained_on.version}` : "uploaded",
        ...metricCells(v),
        el("span", {}, v.created_by ?? "system", " · ", when(v.created_at)),
        action,
      ];
    });
    const baseline = el(
      "button",
      { type: "button", id: "use-baseline" },
      "Use the classical baseline instead",
    );
    baseline.addEventListener("click", () =>
      busy(baseline, async () => {
        try {
          await manageApi.useBaseline(campaignId(), reason());
          say(
            notice,
            "No model version is active: the classical baseline pre-segments new batches.",
            "ok",
          );
          await loadModels();
        } catch (error) {
          sayError(notice, "The baseline was not restored", error);
        }
      }),
    );
    const parts: HTMLElement[] = [
      el(
        "p",
        {},
        "Active: ",
        el("strong", { id: "active-model" }, data.active.label),
        ` (${data.active.architecture})`,
      ),
      rows.length
        ? table(
            "Model versions, newest first",
            [
              "Version",
              "Architecture",
              "Trained on",
              "Test Dice (mean)",
              "Test Dice (lesion)",
              "Best validation Dice",
              "Test cases",
              "Classifier micro-AUC",
              "Made by",
              "",
            ],
            rows,
            { className: "data models" },
          )
        : el("p", { className: "muted" }, "No trained version yet."),
    ];
    for (const v of data.versions) {
      const details = classifierDetails(v);
      if (details) parts.push(details);
    }
    if (data.active.id !== null) parts.push(el("div", { className: "actions" }, baseline));
    root.replaceChildren(...parts);
    showStages(data.versions);
  } catch (error) {
    showLoadError(root, "Could not load the model versions", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

// --- retraining -------------------------------------------------------------------------------

function runOutcome(run: TrainingRun): HTMLElement | null {
  if (run.status === "failed")
    return el(
      "p",
      { className: "error", attrs: { role: "alert" } },
      `The run failed: ${run.error || "no reason recorded"}`,
    );
  if (run.status !== "done") return null;
  const m = run.metrics ?? {};
  // Too few test cases: the decision says how many more approved scans are needed, not "not promoted".
  const headline = run.promoted
    ? "Promoted: the new version is now active."
    : m.needs_more_scans
      ? "Kept the active model:"
      : "Not promoted:";
  // The decision starts with its own "promoted:" / "not promoted:"; the headline says it once.
  const reason = (run.decision ?? "").replace(/^(not )?promoted:\s*/i, "");
  return el(
    "div",
    { className: "notice notice-ok", attrs: { role: "status" }, id: "run-outcome" },
    el("p", {}, el("strong", {}, headline), " ", reason),
    m.test_cases
      ? el(
          "p",
          {},
          `Test Dice of the new version ${num(m.candidate?.mean ?? null, 3)} vs ${m.incumbent?.label ?? "the active one"} ${num(m.incumbent?.mean ?? null, 3)} on ${m.test_cases} test cases.`,
        )
      : null,
    m.tested_on ? el("p", { className: "muted" }, `The new version was ${m.tested_on}.`) : null,
  );
}

/** The notice under the training form follows the run it announced ("… is queued" no longer once it ran). */
function trainNotice(run: TrainingRun): void {
  const notice = document.getElementById("train-notice");
  if (!notice || !notice.textContent?.startsWith(`Training run ${run.id} `)) return;
  const words: Record<string, string> = {
    queued: `Training run ${run.id} is queued.`,
    running: `Training run ${run.id} is running.`,
    done: `Training run ${run.id} finished: ${run.promoted ? "promoted" : "not promoted"}.`,
    failed: `Training run ${run.id} failed.`,
  };
  say(
    notice,
    words[run.status] ?? `Training run ${run.id}: ${run.status}.`,
    run.status === "failed" ? "error" : "ok",
  );
}

function watchRun(runId: number): void {
  runWatch?.stop();
  lossChart?.chart.destroy();
  const box = byId("train-watch");
  const view = new ProgressView(`Training run ${runId}`);
  view.set(null, "loading…");
  lossChart = chartFigure({
    title: `Training run ${runId}: loss and validation Dice per epoch`,
    summary: "training loss (left axis) and validation Dice (right axis) for each epoch so far",
    labels: [],
    series: [
      { label: "Loss", values: [] },
      { label: "Validation Dice", values: [] },
    ],
    type: "line",
    format: (v) => num(v, 4),
    datasetExtras: [{ yAxisID: "y" }, { yAxisID: "y1" }],
    options: {
      scales: {
        x: { title: { display: true, text: "epoch" } },
        y: { min: 0, title: { display: true, text: "loss" } },
        y1: {
          min: 0,
          max: 1,
          position: "right",
          grid: { drawOnChartArea: false },
          title: { display: true, text: "Dice" },
        },
      },
    },
  });
  const outcome = el("div", {});
  box.replaceChildren(view.root, lossChart.figure, outcome);
  const chart = lossChart;
  runWatch = poll(
    () => manageApi.trainingRun(runId),
    (run) => {
      const history = run.history ?? [];
      chart.update(
        history.map((h) => String(h.epoch)),
        [
          { label: "Loss", values: history.map((h) => h.loss) },
          { label: "Validation Dice", values: history.map((h) => h.val_dice) },
        ],
      );
      if (run.status === "done") view.finish("ok", "done");
      else if (run.status === "failed") view.finish("error", "failed");
      else
        view.set(
          run.status === "queued" ? null : run.progress,
          run.message || "waiting for the training worker",
        );
      trainNotice(run);
      outcome.replaceChildren(...[runOutcome(run)].filter((x): x is HTMLElement => x !== null));
    },
    (run) => run.status === "done" || run.status === "failed",
    2000,
  );
  runWatch.done.then(
    () => {
      void loadModels();
      void loadRuns(false);
      void loadExports(); // a run without an export made one
    },
    (error) => view.finish("error", `cannot follow the run: ${errorMessage(error)}`),
  );
}

async function loadRuns(autoWatch: boolean): Promise<void> {
  const root = byId("runs");
  try {
    const runs = await manageApi.trainingRuns(campaignId());
    if (!runs.length) {
      root.replaceChildren(el("p", { className: "muted" }, "No training run yet."));
    } else {
      root.replaceChildren(
        table(
          "Training runs, newest first",
          ["Run", "Status", "Trigger", "Export", "Outcome", "Started by", ""],
          runs.map((r) => {
            const watch = el(
              "button",
              {
                type: "button",
                className: "small",
                attrs: { "aria-label": `Watch training run ${r.id}` },
              },
              "Watch",
            );
            watch.addEventListener("click", () => watchRun(r.id));
            return [
              String(r.id),
              badge(r.status),
              r.trigger,
              r.export ? `v${r.export.version}` : "new",
              r.status === "done"
                ? r.promoted
                  ? "promoted"
                  : r.metrics?.needs_more_scans
                    ? `kept: needs about ${r.metrics.needs_more_scans} more approved scans`
                    : "kept the active model"
                : r.status === "failed"
                  ? r.error.slice(0, 120)
                  : `${Math.round(100 * r.progress)} %`,
              el("span", {}, r.requested_by ?? "system", " · ", when(r.created_at)),
              watch,
            ];
          }),
          { className: "data runs" },
        ),
      );
    }
    const active = runs.find((r) => r.status === "queued" || r.status === "running");
    if (autoWatch && active) watchRun(active.id);
  } catch (error) {
    showLoadError(root, "Could not load the training runs", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

function setupTraining(): void {
  const form = byId<HTMLFormElement>("train-form");
  const notice = byId("train-notice");
  form.addEventListener("submit", async (evt) => {
    evt.preventDefault();
    const body: TrainingRunIn = {
      architecture: byId<HTMLSelectElement>("train-architecture").value,
    };
    const exportId = byId<HTMLSelectElement>("train-export").value;
    body.export_id = exportId ? Number(exportId) : null;
    const params: Record<string, number> = {};
    const epochs = byId<HTMLInputElement>("train-epochs").value;
    const classifierEpochs = byId<HTMLInputElement>("train-classifier-epochs").value;
    const minutes = byId<HTMLInputElement>("train-minutes").value;
    if (epochs) params.epochs = Number(epochs);
    if (classifierEpochs) params.classifier_epochs = Number(classifierEpochs);
    if (minutes) params.max_minutes = Number(minutes);
    if (Object.keys(params).length) body.params = params;
    await busy(byId<HTMLButtonElement>("train-submit"), async () => {
      try {
        const run = await manageApi.startTraining(campaignId(), body);
        say(notice, `Training run ${run.id} is queued.`, "ok");
        watchRun(run.id);
        await loadRuns(false);
      } catch (error) {
        sayError(notice, "Retraining did not start", error);
      }
    });
  });
}

function setupExports(): void {
  const button = byId<HTMLButtonElement>("start-export");
  const notice = byId("export-notice");
  button.addEventListener("click", () =>
    busy(button, async () => {
      try {
        const e = await manageApi.startExport(campaignId());
        say(notice, `Export job ${e.id} started.`, "ok");
        await loadExports();
      } catch (error) {
        sayError(notice, "The export did not start", error);
      }
    }),
  );
}

function loadAll(): void {
  void loadExports();
  void loadModels();
  void loadRuns(true);
}

setupExports();
setupTraining();
campaignSelect.addEventListener("change", () => {
  runWatch?.stop();
  byId("train-watch").replaceChildren();
  loadAll();
});
loadAll();
