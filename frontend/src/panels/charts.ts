// Chart.js (from npm, tree-shaken to what the pages draw) with the app's dark theme, and a
// figure that pairs each chart with the same numbers as a table for screen readers and print.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type ChartType,
} from "chart.js";

import { DASH, el } from "./dom";

Chart.register(
  BarController,
  BarElement,
  CategoryScale,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Legend,
  Tooltip,
);

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function palette(): string[] {
  return [
    cssVar("--accent", "#5eb0ff"),
    cssVar("--ok", "#4cc38a"),
    cssVar("--warn", "#f2c14e"),
    cssVar("--danger", "#ff6b6b"),
    "#c39bff",
    "#7ee0e6",
  ];
}

let themed = false;
function theme(): void {
  if (themed) return;
  themed = true;
  Chart.defaults.color = cssVar("--muted", "#a4b1bf");
  Chart.defaults.borderColor = cssVar("--border", "#334050");
  Chart.defaults.font.family = cssVar("--font", "system-ui, sans-serif");
  Chart.defaults.maintainAspectRatio = false;
  if (window.matchMedia?.("(prefers-reduced-motion: reduce)").matches)
    Chart.defaults.animation = false;
}

export interface Series {
  label: string;
  values: (number | null)[];
}

export interface FigureOptions {
  title: string;
  /** What the chart shows, for the canvas's accessible name. */
  summary: string;
  labels: string[];
  series: Series[];
  format: (value: number | null) => string;
  type?: "bar" | "line";
  /** Extra Chart.js options (scales, axis titles); merged over the defaults. */
  options?: ChartConfiguration["options"];
  /** Per-series Chart.js dataset extras (yAxisID, type), by index. */
  datasetExtras?: Record<string, unknown>[];
  height?: number;
}

export interface ChartFigure {
  figure: HTMLElement;
  chart: Chart;
  /** Redraw with new labels and values (live charts); the table follows. */
  update: (labels: string[], series: Series[]) => void;
}

function dataTable(
  title: string,
  labels: string[],
  series: Series[],
  format: FigureOptions["format"],
) {
  return el(
    "table",
    { className: "data compact" },
    el("caption", { className: "visually-hidden" }, title),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { attrs: { scope: "col" } }, ""),
        ...series.map((s) => el("th", { attrs: { scope: "col" } }, s.label)),
      ),
    ),
    el(
      "tbody",
      {},
      ...labels.map((label, i) =>
        el(
          "tr",
          {},
          el("th", { attrs: { scope: "row" } }, label),
          ...series.map((s) =>
            el("td", {}, s.values[i] === undefined ? DASH : format(s.values[i])),
          ),
        ),
      ),
    ),
  );
}

/** A chart in a <figure> with a caption and, in a <details>, the same numbers as a table. */
export function chartFigure(opts: FigureOptions): ChartFigure {
  theme();
  const colors = palette();
  const canvas = el("canvas", {
    attrs: { role: "img", "aria-label": `${opts.title}: ${opts.summary}` },
  });
  const box = el("div", { className: "chart-box" }, canvas);
  box.style.height = `${opts.height ?? 260}px`;
  const details = el(
    "details",
    { className: "chart-table" },
    el("summary", {}, "Show the numbers"),
    dataTable(opts.title, opts.labels, opts.series, opts.format),
  );
  const figure = el(
    "figure",
    { className: "chart card" },
    el("figcaption", {}, opts.title),
    box,
    details,
  );
  const type: ChartType = opts.type ?? "bar";
  const datasets = opts.series.map((s, i) => ({
    label: s.label,
    data: s.values,
    backgroundColor: colors[i % colors.length],
    borderColor: colors[i % colors.length],
    spanGaps: true,
    ...(opts.datasetExtras?.[i] ?? {}),
  }));
  const chart = new Chart(canvas, {
    type,
    data: { labels: opts.labels, datasets },
    options: {
      responsive: true,
      plugins: {
        legend: { position: "bottom" },
        tooltip: {
          callbacks: {
            label: (ctx) => `${ctx.dataset.label}: ${opts.format(ctx.raw as number | null)}`,
          },
        },
      },
      ...opts.options,
    },
  } as ChartConfiguration);
  const update = (labels: string[], series: Series[]) => {
    chart.data.labels = labels;
    series.forEach((s, i) => {
      if (chart.data.datasets[i]) chart.data.datasets[i].data = s.values;
    });
    chart.update();
    details.replaceChildren(
      details.firstElementChild!,
      dataTable(opts.title, labels, series, opts.format),
    );
  };
  return { figure, chart, update };
}

/** One point per row: its x, its row name in the table (say the x there too), and a value per
 * series (null: none). */
export interface XYRow {
  x: number;
  label: string;
  values: (number | null)[];
}

export interface XYFigureOptions {
  title: string;
  /** What the chart shows, for the canvas's accessible name. */
  summary: string;
  xTitle: string;
  yTitle: string;
  seriesLabels: string[];
  rows: XYRow[];
  format: (value: number | null) => string;
  yMin?: number;
  yMax?: number;
  height?: number;
}

/** Points on a numeric x axis (a figure against a count, not per category), joined by lines in
 * order of x, in a <figure> with the same numbers as a table: one row per point. */
export function xyFigure(opts: XYFigureOptions): ChartFigure {
  theme();
  const colors = palette();
  const canvas = el("canvas", {
    attrs: { role: "img", "aria-label": `${opts.title}: ${opts.summary}` },
  });
  const box = el("div", { className: "chart-box" }, canvas);
  box.style.height = `${opts.height ?? 260}px`;
  const rows = [...opts.rows].sort((a, b) => a.x - b.x);
  const details = el(
    "details",
    { className: "chart-table" },
    el("summary", {}, "Show the numbers"),
    dataTable(
      opts.title,
      rows.map((r) => r.label),
      opts.seriesLabels.map((label, j) => ({ label, values: rows.map((r) => r.values[j]) })),
      opts.format,
    ),
  );
  const figure = el(
    "figure",
    { className: "chart card" },
    el("figcaption", {}, opts.title),
    box,
    details,
  );
  const datasets = opts.seriesLabels.map((label, j) => ({
    label,
    data: rows.map((r) => ({ x: r.x, y: r.values[j] })),
    backgroundColor: colors[j % colors.length],
    borderColor: colors[j % colors.length],
    spanGaps: true,
  }));
  const chart = new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      responsive: true,
      scales: {
        x: { type: "linear", title: { display: true, text: opts.xTitle } },
        y: { min: opts.yMin, max: opts.yMax, title: { display: true, text: opts.yTitle } },
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: {
          callbacks: {
            label: (ctx) =>
              `${ctx.dataset.label}: ${opts.format((ctx.raw as { y: number | null }).y)}`,
          },
        },
      },
    },
  } as ChartConfiguration);
  // Not a live chart: new versions draw a new figure.
  const update = () => chart.update();
  return { figure, chart, update };
}
