// Progress bars of a batch (worklist and viewer).
import type { BatchProgress, WorklistBatch } from "../api/types";

export function progressBar(bar: HTMLElement, progress: BatchProgress): void {
  const total = Math.max(1, progress.total);
  const pct = (n: number) => `${((100 * n) / total).toFixed(1)}%`;
  bar.replaceChildren(
    ...[
      ["done", progress.done],
      ["submitted", progress.submitted],
      ["in-progress", progress.in_progress],
    ].map(([cls, n]) => {
      const span = document.createElement("span");
      span.className = String(cls);
      span.style.width = pct(Number(n));
      return span;
    }),
  );
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", String(progress.total));
  bar.setAttribute("aria-valuenow", String(progress.done + progress.submitted));
  bar.setAttribute(
    "aria-valuetext",
    `${progress.done} passed the checks or curated, ${progress.submitted} in check, ${progress.in_progress} in progress, ${progress.not_started} not started, of ${progress.total}`,
  );
}

/** States an annotator still has work in. */
export const UNFINISHED = new Set(["not_started", "in_progress", "needs_revision"]);

export const viewerUrl = (campaignId: number, scanId: number) => `/viewer/${campaignId}/${scanId}/`;

/** The first unfinished scan of a batch after `afterPosition` (wrapping around), if any. */
export function nextUnfinished(batch: WorklistBatch, afterPosition = -1): number | null {
  const items = [...batch.items].sort((a, b) => a.position - b.position);
  const later = items.filter((i) => i.position > afterPosition && UNFINISHED.has(i.state));
  const earlier = items.filter((i) => i.position <= afterPosition && UNFINISHED.has(i.state));
  return (later[0] ?? earlier[0])?.scan_id ?? null;
}
