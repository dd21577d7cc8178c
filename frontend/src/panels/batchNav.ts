// The batch panel of the viewer: "batch · scan 3 of 50", its progress bar, previous / next.
import { api } from "../api/client";
import type { WorklistBatch } from "../api/types";
import { nextUnfinished, progressBar, viewerUrl } from "./progress";

export interface BatchNavElements {
  position: HTMLElement;
  bar: HTMLElement;
  previous: HTMLAnchorElement;
  next: HTMLAnchorElement;
}

function setLink(
  el: HTMLAnchorElement,
  campaignId: number,
  scanId: number | undefined,
  label: string,
) {
  el.hidden = scanId === undefined;
  if (scanId === undefined) return;
  el.href = viewerUrl(campaignId, scanId);
  el.removeAttribute("aria-disabled");
  el.textContent = label;
}

export interface BatchPlace {
  /** The scan is in one of this person's open batches (they are its annotator). */
  inMyBatch: boolean;
  /** The next unfinished scan of the batch after this one, if any. */
  next: number | null;
}

/**
 * Show where this scan sits in the annotator's batch; after a submit the Next link leads to
 * the next unfinished scan.
 */
export async function showBatchNav(
  el: BatchNavElements,
  campaignId: number,
  scanId: number,
  afterSubmit = false,
): Promise<BatchPlace> {
  let batches: WorklistBatch[];
  try {
    batches = await api.worklist();
  } catch {
    batches = [];
  }
  const batch = batches.find(
    (b) => b.campaign.id === campaignId && b.items.some((i) => i.scan_id === scanId),
  );
  if (!batch) {
    // The worklist holds open batches only: a scan of an approved (or closed) batch of this
    // annotator is theirs too, so only "not in your open batches" is sure.
    el.position.textContent = "Not in one of your open batches";
    el.bar.hidden = true;
    return { inMyBatch: false, next: null };
  }
  const items = [...batch.items].sort((a, b) => a.position - b.position);
  const index = items.findIndex((i) => i.scan_id === scanId);
  el.position.textContent = `${batch.name} · scan ${index + 1} of ${items.length}`;
  progressBar(el.bar, batch.progress);
  setLink(el.previous, campaignId, items[index - 1]?.scan_id, "← Previous");
  setLink(el.next, campaignId, items[index + 1]?.scan_id, "Next →");
  const upcoming = nextUnfinished(batch, items[index]?.position ?? -1);
  const next = upcoming === scanId ? null : upcoming;
  if (afterSubmit && next !== null) {
    setLink(el.next, campaignId, next, "Next unfinished scan →");
    el.next.focus();
  }
  return { inMyBatch: true, next };
}
