// The annotator's worklist (/worklist/): their open batches, per-scan state, batch progress,
// and "open next unfinished scan" (also the N key).
import "../styles/app.css";

import { api } from "../api/client";
import type { ItemState, WorklistBatch } from "../api/types";
import { nextUnfinished, progressBar, viewerUrl } from "../panels/progress";
import { warmScanMetadata } from "../api/dicomweb";

const STATE_LABEL: Record<string, string> = {
  not_started: "Not started",
  in_progress: "In progress",
  submitted: "In check",
  needs_revision: "Needs revision",
  checked: "Checked, awaiting spot check",
  spot_check: "In spot check",
  curated: "Curated",
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { className?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function stateBadge(state: ItemState): HTMLElement {
  return el("span", { className: `state state-${state}` }, STATE_LABEL[state] ?? state);
}

/**
 * The batch's counts in words. The API's `done` counts a scan once both checkers passed it;
 * a scan is only curated after the senior's spot check approved the batch, so the two are said
 * apart ("2 curated · 3 passed the checks, awaiting the spot check").
 */
function progressWords(batch: WorklistBatch): string {
  const { progress } = batch;
  const curated = batch.items.filter((i) => i.state === "curated").length;
  const checked = progress.done - curated;
  return [
    curated ? `${curated} curated` : "",
    checked ? `${checked} passed the checks, awaiting the spot check` : "",
    `${progress.submitted} in check`,
    `${progress.in_progress} in progress`,
    `${progress.not_started} not started`,
    `${progress.total} scans`,
  ]
    .filter(Boolean)
    .join(" · ");
}

function renderBatch(batch: WorklistBatch): HTMLElement {
  const { progress } = batch;
  const next = nextUnfinished(batch);
  const headingId = `batch-${batch.id}-heading`;
  const section = el("section", { className: "card batch" });
  section.setAttribute("aria-labelledby", headingId);

  const actions = el("div", { className: "actions" });
  if (next !== null) {
    actions.append(
      el(
        "a",
        { className: "button primary next-unfinished", href: viewerUrl(batch.campaign.id, next) },
        "Open next unfinished scan",
      ),
    );
  } else {
    actions.append(el("span", { className: "muted" }, "Nothing left to annotate in this batch"));
  }
  section.append(
    el(
      "div",
      { className: "batch-head" },
      el("h2", { id: headingId }, batch.name),
      el("span", { className: "muted" }, batch.campaign.name),
      el("span", {}, progressWords(batch)),
      actions,
    ),
  );
  const bar = el("div", { className: "progress" });
  progressBar(bar, progress);
  section.append(
    bar,
    el(
      "p",
      { className: "legend" },
      el("span", {}, "■ passed the checks or curated"),
      el("span", {}, "■ in check"),
      el("span", {}, "■ in progress"),
    ),
  );
  const legend = section.querySelectorAll<HTMLElement>(".legend span");
  legend[0].style.color = "var(--ok)";
  legend[1].style.color = "var(--accent)";
  legend[2].style.color = "var(--warn)";

  const rows = [...batch.items]
    .sort((a, b) => a.position - b.position)
    .map((item, index) =>
      el(
        "tr",
        {},
        el("td", {}, String(index + 1)),
        el(
          "td",
          {},
          el("a", { href: viewerUrl(batch.campaign.id, item.scan_id) }, `Scan ${item.scan_id}`),
        ),
        el("td", {}, stateBadge(item.state)),
        el(
          "td",
          {},
          item.state === "needs_revision"
            ? el(
                "a",
                {
                  className: "findings-link",
                  href: `/qc/findings/${batch.campaign.id}/${item.scan_id}/`,
                },
                "Findings",
              )
            : "",
        ),
      ),
    );
  const table = el(
    "table",
    { className: "items" },
    el("caption", { className: "visually-hidden" }, `Scans of batch ${batch.name}`),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col" }, "#"),
        el("th", { scope: "col" }, "Scan"),
        el("th", { scope: "col" }, "State"),
        el("th", { scope: "col" }, "QC"),
      ),
    ),
    el("tbody", {}, ...rows),
  );
  section.append(table);
  return section;
}

async function main(): Promise<void> {
  const root = document.getElementById("worklist");
  if (!root) return;
  try {
    const batches = await api.worklist();
    if (!batches.length) {
      root.replaceChildren(
        el(
          "p",
          { className: "card" },
          // "Yet" was wrong once a batch of theirs had been approved: approved batches leave the list.
          "You have no open batch. Your data manager assigns batches of scans; a batch leaves this list once it is approved.",
        ),
      );
    } else {
      root.replaceChildren(...batches.map(renderBatch));
      root.querySelector<HTMLAnchorElement>(".next-unfinished")?.focus();
      const next = nextUnfinished(batches[0]);
      if (next !== null) void warmScanMetadata(next);
    }
  } catch (error) {
    root.replaceChildren(
      el(
        "p",
        { className: "error", role: "alert" } as Partial<HTMLParagraphElement>,
        `Could not load your worklist: ${error instanceof Error ? error.message : error}`,
      ),
    );
  } finally {
    root.setAttribute("aria-busy", "false");
  }
  document.addEventListener("keydown", (evt) => {
    const target = evt.target as HTMLElement;
    if (evt.key.toLowerCase() !== "n" || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
    const next = root.querySelector<HTMLAnchorElement>(".next-unfinished");
    if (next) window.location.href = next.href;
  });
}

void main();
