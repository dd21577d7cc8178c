// The QC dashboard (/qc/dashboard/): the QC figures of DESIGN.md per batch, annotator and
// checker (GET /api/qc/metrics/), as charts with their numbers, and — for data managers — a
// batch's scans with their audit trail (CSV) and report.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage } from "../api/http";
import { qcApi, type CheckerFigures, type Figures, type QcMetrics } from "../api/qc";
import { chartFigure, type ChartFigure, type Series } from "../panels/charts";
import { badge, byId, duration, el, num, pageData, pct, showLoadError, table } from "../panels/dom";
import { viewerUrl } from "../panels/reviewParts";

interface CampaignChoice {
  id: number;
  name: string;
  manager: boolean;
}

const campaigns = pageData<CampaignChoice[]>("dashboard-campaigns", []);
const root = byId("dashboard");
const campaignSelect = byId<HTMLSelectElement>("dashboard-campaign");
const batchSelect = byId<HTMLSelectElement>("dashboard-batch");
let charts: ChartFigure[] = [];
const batchesOf = new Map<number, { id: number; name: string }[]>();

const percent = (v: number | null) => (v === null ? null : Math.round(1000 * v) / 10);
const fmtPercent = (v: number | null) => (v === null ? "—" : `${v.toFixed(1)} %`);
const minutes = (s: number | null) => (s === null ? null : Math.round((10 * s) / 60) / 10);

function tile(title: string, value: string, detail: string, id: string): HTMLElement {
  return el(
    "div",
    { className: "tile", id },
    el("h3", {}, title),
    el("p", { className: "tile-value" }, value),
    el("p", { className: "muted" }, detail),
  );
}

/** The agreement figures; `kappa_reason` and `pass_share` are newer than api/qc.ts's type. */
type Agreement = Figures["checker_agreement"] & {
  kappa_reason?: string;
  pass_share?: number | null;
};

/** Why κ is undefined, in words: "κ undefined: checker A passed every scan (prevalence of pass 88 %)". */
function kappaUndefined(a: Agreement): string {
  const why = a.kappa_reason ? `: ${a.kappa_reason}` : ": every verdict the same";
  const prevalence =
    a.pass_share === null || a.pass_share === undefined
      ? ""
      : ` (prevalence of pass ${pct(a.pass_share)})`;
  return `κ undefined${why}${prevalence}`;
}

function kappaText(a: Agreement): string {
  if (!a.pairs) return "no closed rounds yet";
  if (a.kappa === null) return `Cohen's ${kappaUndefined(a)} · ${a.pairs} pairs`;
  return `Cohen's κ ${num(a.kappa)} · ${a.pairs} pairs`;
}

function overview(f: Figures): HTMLElement {
  const t = f.time_per_scan;
  return el(
    "section",
    { className: "tiles", attrs: { "aria-label": "All scans in view" } },
    tile(
      "Step-1 first-pass rate",
      pct(f.first_pass.rate),
      `${f.first_pass.passed} of ${f.first_pass.annotations} annotations passed round 1 · Jin et al.: 80 %`,
      "tile-first-pass",
    ),
    tile(
      "Rounds until pass",
      num(f.rounds_until_pass.mean, 2),
      `mean over ${f.rounds_until_pass.annotations} annotations that passed`,
      "tile-rounds",
    ),
    tile(
      "Checker agreement",
      pct(f.checker_agreement.agreement),
      kappaText(f.checker_agreement),
      "tile-agreement",
    ),
    tile(
      "Step-3 pass rate",
      pct(f.step3.rate),
      `${f.step3.passed} of ${f.step3.spot_checks} spot checks passed · Jin et al.: 100 %`,
      "tile-step3",
    ),
    tile(
      "Dice, consecutive revisions",
      num(f.dice_consecutive_revisions.mean, 3),
      `${f.dice_consecutive_revisions.pairs} pairs of revisions the checkers saw`,
      "tile-dice",
    ),
    tile(
      "Annotator time per scan",
      duration(t.annotator.mean_s_per_scan),
      `checkers ${duration(t.checker.mean_s_per_scan)} · senior ${duration(t.senior.mean_s_per_scan)} per scan`,
      "tile-time",
    ),
  );
}

const FIGURE_HEADERS = [
  "Scans",
  "First pass",
  "Rounds until pass",
  "Agreement (κ)",
  "Step-3 pass",
  "Dice",
  "Annotator / scan",
  "Checkers / scan",
  "Senior / scan",
];

function figureCells(f: Figures): (string | Node)[] {
  const t = f.time_per_scan;
  return [
    String(f.scans),
    `${pct(f.first_pass.rate)} (${f.first_pass.passed}/${f.first_pass.annotations})`,
    num(f.rounds_until_pass.mean, 2),
    `${pct(f.checker_agreement.agreement)} (${f.checker_agreement.kappa === null ? (f.checker_agreement.pairs ? kappaUndefined(f.checker_agreement) : "κ —") : `κ ${num(f.checker_agreement.kappa)}`})`,
    `${pct(f.step3.rate)} (${f.step3.passed}/${f.step3.spot_checks})`,
    num(f.dice_consecutive_revisions.mean, 3),
    duration(t.annotator.mean_s_per_scan),
    duration(t.checker.mean_s_per_scan),
    duration(t.senior.mean_s_per_scan),
  ];
}

function rateSeries(groups: Figures[]): Series[] {
  return [
    { label: "Step-1 first pass", values: groups.map((g) => percent(g.first_pass.rate)) },
    {
      label: "Checker agreement",
      values: groups.map((g) => percent(g.checker_agreement.agreement)),
    },
    { label: "Step-3 pass", values: groups.map((g) => percent(g.step3.rate)) },
  ];
}

const percentAxis = { y: { min: 0, max: 100, title: { display: true, text: "%" } } };

function section(title: string, id: string, ...children: (Node | null)[]): HTMLElement {
  return el(
    "section",
    { className: "dash-section", id, attrs: { "aria-labelledby": `${id}-h` } },
    el("h2", { id: `${id}-h` }, title),
    ...children.filter((c): c is Node => c !== null),
  );
}

function batchSection(m: QcMetrics): HTMLElement {
  const labels = m.by_batch.map((b) => b.name);
  const rates = chartFigure({
    title: "Pass rates and agreement per batch",
    summary:
      "step-1 first-pass rate, checker agreement and step-3 pass rate, in percent, per batch",
    labels,
    series: rateSeries(m.by_batch),
    format: fmtPercent,
    options: { scales: percentAxis },
  });
  const rounds = chartFigure({
    title: "Rounds until pass and Dice between consecutive revisions per batch",
    summary:
      "mean rounds until both checkers passed (bars) and mean Dice of consecutive revisions (line)",
    labels,
    series: [
      {
        label: "Rounds until pass (mean)",
        values: m.by_batch.map((b) => b.rounds_until_pass.mean),
      },
      { label: "Dice (mean)", values: m.by_batch.map((b) => b.dice_consecutive_revisions.mean) },
    ],
    format: (v) => num(v, 2),
    datasetExtras: [
      { type: "bar", yAxisID: "y" },
      { type: "line", yAxisID: "y1", pointRadius: 5 },
    ],
    options: {
      scales: {
        y: { min: 0, title: { display: true, text: "rounds" }, ticks: { precision: 0 } },
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
  const time = chartFigure({
    title: "Time per scan per role, per batch",
    summary: "mean minutes per scan of the annotator, the checkers together and the senior",
    labels,
    series: (["annotator", "checker", "senior"] as const).map((role) => ({
      label: role === "checker" ? "checkers" : role,
      values: m.by_batch.map((b) => minutes(b.time_per_scan[role].mean_s_per_scan)),
    })),
    format: (v) => (v === null ? "—" : `${v.toFixed(1)} min`),
    options: { scales: { y: { min: 0, title: { display: true, text: "minutes" } } } },
  });
  charts.push(rates, rounds, time);
  return section(
    "Per batch",
    "per-batch",
    el("div", { className: "charts" }, rates.figure, rounds.figure, time.figure),
    table(
      "QC figures per batch",
      ["Batch", "Review", ...FIGURE_HEADERS],
      m.by_batch.map((b) => [b.name, badge(b.review_state), ...figureCells(b)]),
    ),
  );
}

function annotatorSection(m: QcMetrics): HTMLElement {
  const figure = chartFigure({
    title: "Pass rates per annotator",
    summary:
      "step-1 first-pass rate, checker agreement and step-3 pass rate of each annotator's scans, in percent",
    labels: m.by_annotator.map((a) => a.username),
    series: rateSeries(m.by_annotator),
    format: fmtPercent,
    options: { scales: percentAxis },
  });
  charts.push(figure);
  return section(
    "Per annotator",
    "per-annotator",
    el("div", { className: "charts" }, figure.figure),
    table(
      "QC figures per annotator",
      ["Annotator", ...FIGURE_HEADERS],
      m.by_annotator.map((a) => [a.username, ...figureCells(a)]),
    ),
  );
}

function checkerSection(rows: CheckerFigures[]): HTMLElement {
  const labels = rows.map((c) => c.username);
  const rates = chartFigure({
    title: "Pass rate and agreement with the other checker, per checker",
    summary:
      "share of passes among each checker's verdicts, and agreement with the partner checker, in percent",
    labels,
    series: [
      { label: "Pass rate", values: rows.map((c) => percent(c.pass_rate)) },
      {
        label: "Agreement with partner",
        values: rows.map((c) => percent(c.agreement_with_partner.agreement)),
      },
    ],
    format: fmtPercent,
    options: { scales: percentAxis },
  });
  const kappa = chartFigure({
    title: "Cohen's kappa with the other checker",
    summary:
      "Cohen's kappa of each checker's verdicts against the partner's; empty where undefined",
    labels,
    series: [{ label: "Cohen's κ", values: rows.map((c) => c.agreement_with_partner.kappa) }],
    format: (v) => num(v, 2),
    options: { scales: { y: { min: -1, max: 1 } } },
  });
  charts.push(rates, kappa);
  const undefinedFor = rows.filter(
    (c) => c.agreement_with_partner.kappa === null && c.agreement_with_partner.pairs,
  );
  if (undefinedFor.length) {
    kappa.figure.append(
      el(
        "p",
        { className: "muted kappa-note" },
        `No bar where κ is undefined — ${undefinedFor
          .map((c) => `${c.username}: ${kappaUndefined(c.agreement_with_partner)}`)
          .join("; ")}. κ needs both raters to give both verdicts at least once.`,
      ),
    );
  }
  return section(
    "Per checker",
    "per-checker",
    el("div", { className: "charts" }, rates.figure, kappa.figure),
    table(
      "QC figures per checker",
      ["Checker", "Verdicts", "Pass rate", "Agreement with partner", "Cohen's κ", "Time per check"],
      rows.map((c) => [
        c.username,
        String(c.checks),
        `${pct(c.pass_rate)} (${c.passed}/${c.checks})`,
        pct(c.agreement_with_partner.agreement),
        c.agreement_with_partner.kappa === null
          ? c.agreement_with_partner.pairs
            ? kappaUndefined(c.agreement_with_partner)
            : "—"
          : num(c.agreement_with_partner.kappa),
        duration(c.time.mean_s_per_check),
      ]),
    ),
  );
}

function roundsSection(f: Figures): HTMLElement {
  const entries = Object.entries(f.rounds_until_pass.distribution);
  const figure = chartFigure({
    title: "Rounds until both checkers passed",
    summary: "how many annotations passed in round 1, 2, 3 and so on",
    labels: entries.map(([round]) => `round ${round}`),
    series: [{ label: "Annotations", values: entries.map(([, n]) => n) }],
    format: (v) => (v === null ? "—" : String(v)),
    options: { scales: { y: { min: 0, ticks: { precision: 0 } } } },
    height: 200,
  });
  charts.push(figure);
  return section("Rounds until pass", "rounds", el("div", { className: "charts" }, figure.figure));
}

async function scansSection(
  campaign: CampaignChoice,
  batchId: number | null,
): Promise<HTMLElement | null> {
  if (!campaign.manager) return null;
  if (batchId === null) {
    return section(
      "Scans and audit trail",
      "scans",
      el(
        "p",
        { className: "muted" },
        "Choose a batch above to list its scans with their audit trail and report.",
      ),
    );
  }
  try {
    const board = await qcApi.board(batchId);
    return section(
      "Scans and audit trail",
      "scans",
      el(
        "p",
        {},
        el("a", { href: `/manage/batches/${batchId}/` }, `Board of batch ${board.batch.name}`),
      ),
      table(
        `Scans of batch ${board.batch.name}`,
        ["#", "Scan", "State", "Round", "Audit trail", "Report"],
        board.items.map((item) => [
          String(item.position + 1),
          el("a", { href: viewerUrl(campaign.id, item.scan_id) }, `Scan ${item.scan_id}`),
          badge(item.state),
          String(item.round),
          el(
            "a",
            {
              href: qcApi.auditCsvUrl(campaign.id, item.scan_id),
              download: "",
              className: "audit-link",
            },
            "Audit CSV",
          ),
          el("a", { href: `/reports/${campaign.id}/${item.scan_id}/` }, "Report"),
        ]),
      ),
    );
  } catch (error) {
    return section(
      "Scans and audit trail",
      "scans",
      el(
        "p",
        { className: "error", attrs: { role: "alert" } },
        `Could not load the batch's scans: ${errorMessage(error)}`,
      ),
    );
  }
}

function fillBatches(campaignId: number, selected: number | null): void {
  const batches = batchesOf.get(campaignId) ?? [];
  batchSelect.replaceChildren(
    el("option", { value: "" }, "All batches"),
    ...batches.map((b) =>
      el("option", { value: String(b.id), selected: b.id === selected }, b.name),
    ),
  );
}

async function load(): Promise<void> {
  const campaignId = Number(campaignSelect.value);
  const campaign = campaigns.find((c) => c.id === campaignId) ?? {
    id: campaignId,
    name: "",
    manager: false,
  };
  const batchId = batchSelect.value ? Number(batchSelect.value) : null;
  const url = new URL(window.location.href);
  url.searchParams.set("campaign", String(campaignId));
  if (batchId === null) url.searchParams.delete("batch");
  else url.searchParams.set("batch", String(batchId));
  window.history.replaceState(null, "", url);
  root.setAttribute("aria-busy", "true");
  try {
    if (!batchesOf.has(campaignId)) {
      const all = await qcApi.metrics(campaignId);
      batchesOf.set(
        campaignId,
        all.by_batch.map((b) => ({ id: b.batch_id, name: b.name })),
      );
      fillBatches(campaignId, batchId);
    }
    const metrics = await qcApi.metrics(campaignId, batchId);
    charts.forEach((c) => c.chart.destroy());
    charts = [];
    const scans = await scansSection(campaign, batchId);
    const parts: (Node | null)[] = [
      overview(metrics.overall),
      metrics.by_batch.length ? batchSection(metrics) : null,
      metrics.by_annotator.length ? annotatorSection(metrics) : null,
      metrics.by_checker.length ? checkerSection(metrics.by_checker) : null,
      metrics.overall.rounds_until_pass.annotations ? roundsSection(metrics.overall) : null,
      scans,
    ];
    root.replaceChildren(...parts.filter((p): p is Node => p !== null));
    if (!metrics.overall.scans) {
      root.append(
        el("p", { className: "card muted" }, "No annotation in this campaign has reached QC yet."),
      );
    }
  } catch (error) {
    showLoadError(root, "Could not load the QC figures", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

function main(): void {
  const params = new URLSearchParams(window.location.search);
  const wanted = Number(params.get("campaign"));
  if (campaigns.some((c) => c.id === wanted)) campaignSelect.value = String(wanted);
  const batch = params.get("batch");
  if (batch) batchSelect.append(el("option", { value: batch, selected: true }, `Batch ${batch}`));
  campaignSelect.closest("label")!.hidden = campaigns.length < 2;
  campaignSelect.addEventListener("change", () => {
    fillBatches(Number(campaignSelect.value), null);
    void load();
  });
  batchSelect.addEventListener("change", () => void load());
  byId<HTMLFormElement>("dashboard-filters").addEventListener("submit", (evt) => {
    evt.preventDefault();
    batchesOf.delete(Number(campaignSelect.value));
    void load();
  });
  void load();
}

main();
