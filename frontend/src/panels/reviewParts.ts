// Pieces of the check and spot-check pages: a summary list, a revision's scan labels and
// voxel counts, the checkers' rounds, queue cells and the notice after a verdict.
import { api } from "../api/client";
import type { CheckRound } from "../api/qc";
import type { Campaign } from "../api/types";
import type { SliceGeometry } from "./slices";
import { reviewCard, type ScanBounds } from "./verdictForm";
import { age, DASH, el, table, when } from "./dom";

export function summaryList(pairs: [string, Node | string][]): HTMLDListElement {
  return el(
    "dl",
    { className: "summary" },
    ...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]),
  );
}

export function scanLabelsTable(labels: Record<string, string>): HTMLElement {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return el("p", { className: "muted" }, "No scan-level labels were set.");
  return table(
    "Scan-level labels",
    ["Label", "Value"],
    entries.map(([k, v]) => [k, String(v)]),
    { captionHidden: true },
  );
}

export function voxelCountsTable(
  counts: Record<string, number>,
  campaign: Campaign | null,
): HTMLElement {
  const names = new Map(
    (campaign?.label_schema?.classes ?? []).map((c) => [String(c.value), c.name]),
  );
  const entries = Object.entries(counts ?? {}).filter(([, n]) => n > 0);
  if (!entries.length) return el("p", { className: "muted" }, "The revision labels no voxel.");
  return table(
    "Labelled voxels by class",
    ["Class", "Voxels"],
    entries.map(([value, n]) => [names.get(value) ?? `class ${value}`, n.toLocaleString()]),
    { captionHidden: true },
  );
}

/** The scan's size, to bound the finding fields; null if the scan cannot be read. */
export async function scanBounds(scanId: number): Promise<ScanBounds | null> {
  try {
    const scan = await api.scan(scanId);
    return {
      slices: scan.slices,
      rows: scan.rows,
      columns: scan.columns,
      direction: scan.direction,
    };
  } catch {
    return null;
  }
}

export async function campaignOrNull(campaignId: number): Promise<Campaign | null> {
  try {
    return await api.campaign(campaignId);
  } catch {
    return null;
  }
}

export const viewerUrl = (
  campaignId: number,
  scanId: number,
  query: Record<string, string | number> = {},
) => {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  const text = params.toString();
  return `/viewer/${campaignId}/${scanId}/${text ? `?${text}` : ""}`;
};

/** A viewer URL that also jumps to a slice. */
export function withSlice(url: string, slice: number | null): string | null {
  if (slice === null) return null;
  return `${url}${url.includes("?") ? "&" : "?"}slice=${slice}`;
}

export const orDash = (value: unknown) =>
  value === null || value === undefined || value === "" ? DASH : String(value);

/** The checkers' rounds of a scan, each with its verdicts; null when there are none. */
export function roundsSection(
  title: string,
  rounds: CheckRound[],
  linkOf: (slice: number | null) => string | null,
  g: SliceGeometry | null = null,
): HTMLElement | null {
  if (!rounds.length) return null;
  return el(
    "section",
    { className: "card" },
    el("h2", {}, title),
    ...rounds.map((round) =>
      el(
        "div",
        { className: "round" },
        el("h3", {}, `Round ${round.round} (revision id ${round.revision_id})`),
        ...round.checks.map((c) =>
          reviewCard(c.label, c.verdict, c.findings, c.decided_at, (f) => linkOf(f.slice), g),
        ),
      ),
    ),
  );
}

/** A queue's "Assigned" cell: the time and how long ago. */
export function assignedCell(iso: string): HTMLElement {
  return el("span", {}, when(iso), " ", el("span", { className: "muted" }, age(iso)));
}

/** The notice after a verdict: what was recorded, and the next item of the queue if any. */
export function recordedNotice(
  recorded: string,
  next: { href: string; label: string } | null,
  noneLeft: string,
): HTMLElement {
  return el(
    "p",
    { className: "notice notice-ok", attrs: { role: "status" }, id: "verdict-recorded" },
    recorded,
    next ? el("a", { href: next.href }, next.label) : noneLeft,
  );
}
