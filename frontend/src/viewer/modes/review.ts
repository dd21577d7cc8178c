// Review mode (?check=<id> for a checker, ?spot_check=<id> for a senior): the revision under
// review, read-only, with the reviewer's panel: findings placed by clicking, then pass or fail.
import { api, type LabelVolume } from "../../api/client";
import { qcApi, type Finding } from "../../api/qc";
import type { Annotation } from "../../api/types";
import type { BatchPlace } from "../../panels/batchNav";
import { ReviewPanel, type ReviewTarget } from "../../panels/review";
import type { ToolMode } from "../../tools/toolGroup";
import { $ } from "../../panels/dom";
import type { Viewer } from "../viewer";
import type { ViewerMode } from "./mode";

/**
 * The check or spot check named by the page's query, from the QC API (only what it shows this
 * person); null when the page is not in review mode.
 */
export function reviewTargetOf(
  params: URLSearchParams,
  campaignId: number,
  scanId: number,
): Promise<ReviewTarget> | null {
  const checkId = Number(params.get("check")) || null;
  const spotCheckId = checkId ? null : Number(params.get("spot_check")) || null;
  if (checkId === null && spotCheckId === null) return null;
  const target = checkId !== null ? checkTarget(checkId) : spotCheckTarget(spotCheckId!);
  return target.then((t) => {
    if (t.campaignId !== campaignId || t.scanId !== scanId) {
      throw new Error(`this ${t.kind.replace("_", " ")} is about another scan`);
    }
    return t;
  });
}

async function checkTarget(id: number): Promise<ReviewTarget> {
  const c = await qcApi.check(id);
  return {
    kind: "check",
    id: c.id,
    campaignId: c.campaign.id,
    scanId: c.scan_id,
    revisionId: c.revision.id,
    revisionNumber: c.revision.number,
    scanLabels: c.revision.scan_labels,
    open: c.mine && c.verdict === "pending",
    closedReason: c.mine
      ? `Your verdict: ${c.verdict}. Read-only.`
      : "This check is not assigned to you: read-only.",
    findings: c.findings,
    queueUrl: "/qc/checks/",
    submit: (body) => qcApi.checkVerdict(c.id, body),
  };
}

async function spotCheckTarget(id: number): Promise<ReviewTarget> {
  const s = await qcApi.spotCheck(id);
  return {
    kind: "spot_check",
    id: s.id,
    campaignId: s.campaign.id,
    scanId: s.scan_id,
    revisionId: s.revision.id,
    revisionNumber: s.revision.number,
    scanLabels: s.revision.scan_labels,
    open: s.verdict === "pending",
    closedReason: `Verdict: ${s.verdict}. Read-only.`,
    findings: s.findings,
    queueUrl: "/qc/spot-checks/",
    submit: (body) => qcApi.spotCheckVerdict(s.id, body),
  };
}

export class ReviewMode implements ViewerMode {
  readonly kind = "review";
  readonly annotation: Promise<Annotation>;
  readonly labels: Promise<LabelVolume | null>;
  private panel: ReviewPanel | null = null;

  constructor(
    private readonly viewer: Viewer,
    private readonly target: Promise<ReviewTarget>,
  ) {
    target.catch(() => undefined); // awaited in start(); no unhandled rejection meanwhile
    // Review mode shows the revision under review, never the annotation's head.
    this.annotation = target.then(() => ({ id: null, state: "reviewing", head: null }));
    this.labels = target.then((t) => api.labels(viewer.campaignId, viewer.scanId, t.revisionId));
  }

  private get open(): boolean {
    return this.panel?.open ?? false;
  }

  async place(): Promise<BatchPlace> {
    return { inMyBatch: false, next: null };
  }

  wire(): void {
    // The finding tool: a click records the voxel under it, in the API's (z, y, x).
    this.viewer.onVoxelClick((z, y, x) => {
      if (this.viewer.tools?.mode === "finding" && this.open) this.panel?.place(z, y, x);
    });
  }

  async scanLabelValues(): Promise<Record<string, string>> {
    return (await this.target).scanLabels;
  }

  async showStartingPoint(): Promise<void> {
    const { viewer } = this;
    const target = await this.target;
    viewer.setReadOnly(`Revision ${target.revisionNumber} under review: read-only.`);
    this.panel = new ReviewPanel($("#review-panel"), {
      target,
      markers: viewer.markers!,
      geometry: viewer.geometry,
      jumpTo: (z) => viewer.jumpTo(z),
      setFindingTool: (on) => viewer.setTool(on ? "finding" : "windowLevel"),
      findingToolOn: () => viewer.tools?.mode === "finding",
      status: (text, kind) => viewer.setSaveStatus(text, kind),
    });
    // Nothing is armed at the start: a click sets window/level until "Place finding" (F).
    this.panel.toolChanged(false);
  }

  async afterLoad(): Promise<void> {
    // The page's generic "No revision yet" is about the annotation's head, which a reviewer never
    // sees: say which revision is on screen.
    const target = await this.target;
    this.viewer.setSaveStatus(`Revision ${target.revisionNumber} on screen, read-only`);
  }

  /** Nothing of the annotation is edited here: no "unsaved changes". */
  refresh(): void {}

  mayUse(tool: ToolMode): boolean {
    return tool === "windowLevel" || (tool === "finding" && this.open);
  }

  toolChanged(tool: ToolMode): void {
    this.panel?.toolChanged(tool === "finding");
  }

  hasUnsavedWork(): boolean {
    return this.open && (this.panel?.findings.length ?? 0) > 0;
  }

  findings(): Finding[] {
    return this.panel ? this.panel.findings.map((f) => ({ ...f })) : [];
  }

  cancel(): boolean {
    if (this.viewer.tools?.mode !== "finding") return false;
    this.viewer.setTool("windowLevel");
    return true;
  }

  // Read-only: no edits to undo, nothing to save.
  undo(): void {}
  redo(): void {}
  save(): void {}
}
