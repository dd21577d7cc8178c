// Data-manager controls of one batch (reassign, close) and its pre-segmentation progress;
// used by the batch list and by a batch's board.
import { errorMessage } from "../api/http";
import { manageApi, PRESEG_FINISHED, type BatchOut, type PresegProgress } from "../api/manage";
import { badge, busy, el, say, STATE_LABELS } from "./dom";
import { poll, ProgressView, type Poll } from "./jobProgress";

export interface Person {
  id: number;
  username: string;
}

let counter = 0;

/** Reassign (select + button) and close, reporting into `notice`; `changed` refreshes the view. */
export function batchControls(
  batch: Pick<BatchOut, "id" | "name" | "status" | "annotator_id">,
  annotators: Person[],
  notice: HTMLElement,
  changed: () => void,
): HTMLElement {
  if (batch.status !== "open") return el("span", { className: "muted" }, "Closed");
  counter += 1;
  const selectId = `reassign-${batch.id}-${counter}`;
  const select = el(
    "select",
    { id: selectId, className: "reassign-select" },
    el("option", { value: "" }, "least-loaded annotator"),
    ...annotators.map((a) =>
      el("option", { value: String(a.id), selected: a.id === batch.annotator_id }, a.username),
    ),
  );
  const assign = el(
    "button",
    { type: "button", className: "reassign" },
    batch.annotator_id ? "Reassign" : "Assign",
  );
  const close = el("button", { type: "button", className: "close-batch danger" }, "Close");
  assign.addEventListener("click", () =>
    busy(assign, async () => {
      try {
        const out = await manageApi.assignBatch(
          batch.id,
          select.value ? Number(select.value) : null,
        );
        say(notice, `Batch ${out.name} is now assigned to ${out.annotator}.`, "ok");
        changed();
      } catch (error) {
        say(notice, `Batch ${batch.name} was not assigned: ${errorMessage(error)}`, "error");
      }
    }),
  );
  close.addEventListener("click", () => {
    const ok = window.confirm(
      `Close batch ${batch.name}? Its scans leave the annotator's worklist and can be batched again.`,
    );
    if (!ok) return;
    void busy(close, async () => {
      try {
        await manageApi.closeBatch(batch.id);
        say(notice, `Batch ${batch.name} is closed.`, "ok");
        changed();
      } catch (error) {
        say(notice, `Batch ${batch.name} was not closed: ${errorMessage(error)}`, "error");
      }
    });
  });
  return el(
    "span",
    { className: "row-actions" },
    el(
      "label",
      { htmlFor: selectId, className: "visually-hidden" },
      `Annotator for batch ${batch.name}`,
    ),
    select,
    assign,
    close,
  );
}

export function presegText(p: PresegProgress): string {
  if (p.status === "not_started") return "not started (starts when the batch is assigned)";
  const total = p.total ?? 0;
  const finished = ["done", "skipped", "failed"].reduce((n, s) => n + (p.counts[s] ?? 0), 0);
  const parts = Object.entries(p.counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${(STATE_LABELS[status] ?? status).toLowerCase()}`);
  return `${finished} of ${total} finished${parts.length ? ` (${parts.join(", ")})` : ""}`;
}

/** One scan's pre-segmentation in a few words; the full error goes into a tooltip. */
export function presegScanCell(scan: PresegProgress["scans"][number] | undefined): HTMLElement {
  if (!scan) return el("span", { className: "muted" }, "—");
  const label = `${STATE_LABELS[scan.status] ?? scan.status}${scan.model_label ? ` · ${scan.model_label}` : ""}`;
  const short = scan.error.length > 60 ? `${scan.error.slice(0, 57)}…` : scan.error;
  return el(
    "span",
    { className: "stack", title: scan.error },
    badge(scan.status === "done" ? "done" : scan.status),
    scan.model_label ? el("span", { className: "muted" }, scan.model_label) : null,
    short ? el("span", { className: "muted small-text" }, short) : null,
    el("span", { className: "visually-hidden" }, label),
  );
}

/** A pre-segmentation bar that polls GET /api/batches/{id}/presegmentation/ until finished. */
export function presegWatch(
  batchId: number,
  onUpdate?: (p: PresegProgress) => void,
): { view: ProgressView; watch: Poll<PresegProgress> } {
  const view = new ProgressView("Pre-segmentation");
  view.set(null, "loading…");
  const watch = poll(
    () => manageApi.preseg(batchId),
    (p) => {
      const finished = PRESEG_FINISHED.has(p.status);
      if (finished && p.status !== "not_started") {
        view.finish(p.status === "done" ? "ok" : "error", presegText(p));
      } else {
        view.set(p.status === "not_started" ? 0 : (p.progress ?? 0), presegText(p));
      }
      onUpdate?.(p);
    },
    (p) => PRESEG_FINISHED.has(p.status),
    2000,
  );
  watch.done.catch((error) =>
    view.finish("error", `cannot read the progress: ${errorMessage(error)}`),
  );
  return { view, watch };
}
