// The printable quantification report of a scan (/reports/<campaign>/<scan>/): lung and lesion
// volumes, percent of lung involved, ground-glass vs consolidation, the severity score per
// region (zones or lobes, as the API says), and the patient's serial scans side by side with
// percent involvement over time.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage } from "../api/http";
import { manageApi, type PatientReports, type ScanReport } from "../api/manage";
import { chartFigure, type ChartFigure } from "../panels/charts";
import { badge, byId, DASH, el, ml, num, showLoadError, table, when } from "../panels/dom";

const root = byId("report");
const campaignId = Number(root.dataset.campaignId);
const scanId = Number(root.dataset.scanId);
const revisionSelect = byId<HTMLSelectElement>("report-revision");
let trend: ChartFigure | null = null;

const percentText = (v: number | null | undefined) =>
  v === null || v === undefined ? DASH : `${v.toFixed(1)} %`;

function figure(label: string, value: string, id: string, detail = ""): HTMLElement {
  return el(
    "div",
    { className: "tile", id },
    el("h3", {}, label),
    el("p", { className: "tile-value" }, value),
    detail ? el("p", { className: "muted" }, detail) : null,
  );
}

function regionTable(r: ScanReport): HTMLElement {
  const kind = r.region_kind === "lobe" ? "Lobe" : "Zone";
  const rows: (string | Node)[][] = r.regions.map((g) => [
    g.name,
    ml(g.lung_volume_ml),
    ml(g.lesion_volume_ml),
    percentText(g.percent_involved),
    String(g.severity_score),
  ]);
  rows.push([
    el("strong", {}, "Total"),
    ml(r.lung_volume_ml),
    ml(r.lesion_volume_ml),
    percentText(r.percent_of_lung_involved),
    el("strong", { id: "severity-total" }, `${r.severity_score_total} / ${r.severity_score_max}`),
  ]);
  return table(
    `CT severity score per ${kind.toLowerCase()}`,
    [kind, "Lung", "Lesion", "Involved", "Score (0–5)"],
    rows,
    { className: "data regions" },
  );
}

function classTable(r: ScanReport): HTMLElement {
  const rows: (string | Node)[][] = Object.entries(r.lesion_volume_by_class_ml).map(
    ([name, volume]) => [
      name,
      ml(volume),
      r.lesion_volume_ml ? percentText((100 * volume) / r.lesion_volume_ml) : DASH,
    ],
  );
  return table("Lesion volume by class", ["Class", "Volume", "Share of lesions"], rows, {
    className: "data classes",
  });
}

// The active classifier's probabilities, or why none are shown (no classifier yet, or withheld
// from the scan's annotator so their own diagnosis is not anchored).
function classifierCard(r: ScanReport): HTMLElement | null {
  const c = r.classifier;
  if (!c) return null;
  if (!c.shown) {
    return el(
      "section",
      { className: "card", id: "report-classifier" },
      el("h2", {}, "Scan-level classifier"),
      el("p", { className: "muted" }, c.reason ?? "No classifier probabilities for this scan."),
    );
  }
  const rows: (string | Node)[][] = Object.entries(c.probabilities ?? {}).map(([name, p]) => [
    name,
    `${(100 * p).toFixed(1)} %`,
  ]);
  return el(
    "section",
    { className: "card", id: "report-classifier" },
    el("h2", {}, `Scan-level classifier${c.model_version ? ` (${c.model_version})` : ""}`),
    table("Class probabilities", ["Diagnosis", "Probability"], rows, { className: "data" }),
    c.note ? el("p", { className: "muted" }, c.note) : null,
  );
}

function renderReport(r: ScanReport): void {
  const l = r.labels;
  const hu = r.other_opacity_by_hu_ml;
  root.replaceChildren(
    el(
      "dl",
      { className: "summary report-meta" },
      el("dt", {}, "Patient"),
      el("dd", { id: "report-patient" }, r.patient),
      el("dt", {}, "Study date"),
      el("dd", {}, r.study_date ?? DASH),
      el("dt", {}, "Labels"),
      el(
        "dd",
        {},
        `revision #${l.revision_number} (${l.selected_by}) by ${l.author} · `,
        when(l.created_at),
        " · ",
        badge(l.annotation_state),
        // The state "curated" already says it; only the other states need the word.
        l.annotation_state === "curated" ? "" : l.curated ? " · curated" : " · not curated yet",
      ),
      el("dt", {}, "Voxel"),
      el(
        "dd",
        {},
        `${num(r.spacing_mm.x, 2)} × ${num(r.spacing_mm.y, 2)} × ${num(r.spacing_mm.z, 2)} mm`,
      ),
      el("dt", {}, "Lungs"),
      el("dd", {}, r.lungs.method),
    ),
    el(
      "div",
      { className: "tiles" },
      figure("Lung volume", ml(r.lung_volume_ml), "tile-lung"),
      figure("Lesion volume", ml(r.lesion_volume_ml), "tile-lesion"),
      figure("Lung involved", percentText(r.percent_of_lung_involved), "tile-percent"),
      figure(
        "CT severity score",
        `${r.severity_score_total} / ${r.severity_score_max}`,
        "tile-severity",
        `sum over ${r.regions.length} ${r.region_kind}s`,
      ),
    ),
    el(
      "section",
      { className: "card" },
      el("h2", {}, "Ground-glass and consolidation"),
      classTable(r),
      hu
        ? el(
            "p",
            { className: "muted" },
            `Lesions labelled "other opacity", split by density: ground-glass-like (below −350 HU) ${ml(hu.ground_glass_like_below_minus_350_hu_ml)}, consolidation-like (from −350 HU) ${ml(hu.consolidation_like_from_minus_350_hu_ml)}.`,
          )
        : null,
    ),
    el(
      "section",
      { className: "card" },
      el("h2", {}, `Severity per ${r.region_kind}`),
      el("p", { className: "region-note" }, r.region_note),
      regionTable(r),
      el("p", { className: "muted" }, `Bands ${r.severity_bands}.`),
    ),
    classifierCard(r) ?? "",
  );
}

function renderSerial(p: PatientReports): void {
  const box = byId("serial-body");
  byId("serial").hidden = false;
  trend?.chart.destroy();
  const cards = p.scans.map((s) => {
    const r = s.report;
    const current = s.scan_id === scanId;
    return el(
      "article",
      {
        className: `card serial-scan${current ? " current" : ""}`,
        attrs: { "aria-current": current ? "true" : null },
      },
      el(
        "h3",
        {},
        s.study_date ?? "date unknown",
        current ? el("span", { className: "muted" }, " · this scan") : null,
      ),
      r
        ? el(
            "dl",
            { className: "summary" },
            el("dt", {}, "Involved"),
            el("dd", {}, percentText(r.percent_of_lung_involved)),
            el("dt", {}, "Lesion"),
            el("dd", {}, ml(r.lesion_volume_ml)),
            el("dt", {}, "Lung"),
            el("dd", {}, ml(r.lung_volume_ml)),
            el("dt", {}, "Severity"),
            // Per lobe or per zone, as that scan's report was scored: 0–25 and 0–30 differ.
            el(
              "dd",
              {},
              `${r.severity_score_total} / ${r.severity_score_max} per ${r.region_kind}`,
            ),
          )
        : el("p", { className: "muted" }, s.reason || "no report"),
      current
        ? null
        : el(
            "a",
            { href: `/reports/${campaignId}/${s.scan_id}/`, className: "no-print" },
            `Report of scan ${s.scan_id}`,
          ),
    );
  });
  const points = p.percent_of_lung_involved_over_time;
  const parts: HTMLElement[] = [el("div", { className: "serial-grid" }, ...cards)];
  if (points.length > 1) {
    trend = chartFigure({
      title: "Percent of lung involved over time",
      summary: "percent of the lung volume involved by lesions at each study date",
      labels: points.map((x) => x.study_date ?? `scan ${x.scan_id}`),
      series: [
        { label: "Lung involved (%)", values: points.map((x) => x.percent_of_lung_involved) },
      ],
      type: "line",
      format: (v) => percentText(v),
      options: { scales: { y: { min: 0, title: { display: true, text: "%" } } } },
      height: 220,
    });
    parts.push(trend.figure);
  }
  box.replaceChildren(...parts);
}

async function load(): Promise<void> {
  root.setAttribute("aria-busy", "true");
  let report: ScanReport;
  try {
    report = await manageApi.report(campaignId, scanId, revisionSelect.value || undefined);
    renderReport(report);
  } catch (error) {
    showLoadError(root, "No report", error);
    return;
  } finally {
    root.setAttribute("aria-busy", "false");
  }
  try {
    renderSerial(await manageApi.patientReports(report.patient, campaignId));
  } catch (error) {
    byId("serial").hidden = false;
    byId("serial-body").replaceChildren(
      el("p", { className: "muted" }, `No serial scans to show: ${errorMessage(error)}`),
    );
  }
}

revisionSelect.addEventListener("change", () => void load());
byId("print-report").addEventListener("click", () => window.print());
// The numbers behind the charts are in closed <details>; print them open, and draw the chart
// at its print size without animation.
window.addEventListener("beforeprint", () => {
  document.querySelectorAll("details").forEach((d) => (d.open = true));
  trend?.chart.resize();
  trend?.chart.update("none");
});
void load();
