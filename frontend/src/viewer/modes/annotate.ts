// Annotate mode: the annotator edits the head revision (a person's, or the model's
// pre-segmentation), saves changed boxes, submits for checking, and sees the findings to fix
// when the scan came back from QC.
import { Enums as ToolEnums } from "@cornerstonejs/tools";
import { eventTarget } from "@cornerstonejs/core";

import { api, type LabelVolume } from "../../api/client";
import { errorMessage } from "../../api/http";
import { qcApi, type AnnotatorFindings, type Finding } from "../../api/qc";
import type { Annotation } from "../../api/types";
import type { BatchPlace } from "../../panels/batchNav";
import { confirmOnce } from "../../panels/confirm";
import { showAnnotatorFindings, type MarkedFinding } from "../../panels/review";
import { History } from "../../tools/history";
import { attachRegionGrow, type GrowOptions } from "../../tools/regionGrow";
import type { ToolMode } from "../../tools/toolGroup";
import { $ } from "../../panels/dom";
import type { Viewer } from "../viewer";
import type { ViewerMode } from "./mode";

/** How the read-only banner names an annotation state the annotator cannot edit in. */
const STATE_WORDS: Record<string, string> = {
  submitted: "in check",
  checked: "checked",
  spot_check: "in the senior's spot check",
  curated: "curated",
};

export class AnnotateMode implements ViewerMode {
  readonly kind = "annotate";
  readonly annotation: Promise<Annotation>;
  readonly labels: Promise<LabelVolume | null>;
  private readonly fixes: Promise<AnnotatorFindings | null>;
  private marked: MarkedFinding[] = [];

  constructor(private readonly viewer: Viewer) {
    const { campaignId, scanId } = viewer;
    this.annotation = api.annotation(campaignId, scanId);
    this.labels = this.annotation.then((a) => (a.head ? api.labels(campaignId, scanId) : null));
    // The annotator's findings to fix, when the scan came back from QC.
    this.fixes = this.annotation
      .then((a) => (a.state === "needs_revision" ? qcApi.findings(campaignId, scanId) : null))
      .catch((error) => {
        console.warn("curatect: findings not loaded", error);
        return null;
      });
  }

  private get session() {
    return this.viewer.session!;
  }

  private get scanLabels() {
    return this.viewer.scanLabels!;
  }

  place(): Promise<BatchPlace> {
    return this.viewer.batchNav();
  }

  wire(): void {
    const { viewer } = this;
    viewer.listen($("#save"), "click", () => void this.saveNow());
    viewer.listen($("#submit"), "click", () => void this.submit());
    viewer.listen($("#accept-preseg"), "click", () => void this.saveNow(true));
    viewer.listen($("#undo"), "click", () => this.undo());
    viewer.listen($("#redo"), "click", () => this.redo());
    // Edits are marked where they happen (stroke, grow, undo, redo): Cornerstone's segmentation
    // events also fire for loading and display changes, so they cannot tell an edit.
    let stroke = false;
    viewer.listen($("#view-axial"), "pointerdown", (evt: PointerEvent) => {
      const tool = viewer.tools!.mode;
      const brushing = tool === "brush" || tool === "eraser";
      stroke =
        evt.button === 0 && !evt.shiftKey && !evt.ctrlKey && this.session.editable && brushing;
    });
    viewer.listen(window, "pointerup", () => {
      if (stroke) this.markEdited();
      stroke = false;
    });
    viewer.listen(eventTarget, ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, () =>
      this.refreshUndo(),
    );
    viewer.onDestroy(attachRegionGrow($("#view-axial"), this.growOptions()));
  }

  async scanLabelValues(
    annotation: Annotation,
    labels: LabelVolume | null,
  ): Promise<Record<string, string> | null> {
    return labels ? (annotation.head?.scan_labels ?? {}) : null;
  }

  /** The starting point: the head revision (a person's, or the model's pre-segmentation). */
  async showStartingPoint(annotation: Annotation): Promise<void> {
    const { viewer, session } = this;
    // A scan past the annotator's part (checked, spot check, curated) says so first: its batch
    // may have left the worklist (approved), which made it read "not in one of your batches".
    const past = STATE_WORDS[annotation.state];
    if (session.state === "viewing" && past) {
      viewer.setReadOnly(`This scan is ${past}: read-only.`);
      return;
    }
    if (session.state === "viewing") {
      viewer.setReadOnly("Read-only: this scan is not in one of your open batches.");
      return;
    }
    if (!session.editable) {
      const state = STATE_WORDS[annotation.state] ?? annotation.state.replace("_", " ");
      viewer.setReadOnly(`This scan is ${state}: read-only.`);
      return;
    }
    if (annotation.head?.source === "model") {
      $("#preseg-banner").hidden = false;
      $("#preseg-text").textContent = "Starting point: the pre-segmentation. Edit it, or:";
    }
    viewer.setTool("brush");
  }

  async afterLoad(): Promise<void> {
    const fixes = await this.fixes;
    if (fixes && fixes.reviews.length) {
      this.marked = showAnnotatorFindings(
        $("#findings-panel"),
        fixes,
        this.viewer.markers!,
        (z) => this.viewer.jumpTo(z),
        this.viewer.geometry,
      );
    }
  }

  mayUse(tool: ToolMode): boolean {
    if (tool === "windowLevel") return true;
    return tool !== "finding" && !!this.viewer.session?.editable;
  }

  toolChanged(): void {}

  hasUnsavedWork(): boolean {
    return this.viewer.dirty();
  }

  findings(): Finding[] {
    return this.marked.map((m) => m.finding);
  }

  /** An edit happened: a brush or eraser stroke, a grow, an undo or a redo. */
  private markEdited(): void {
    this.session.markLabelsDirty();
    this.refresh();
  }

  refresh(): void {
    const { viewer } = this;
    if (!viewer.session || !viewer.ready) return;
    const status = viewer.hook.saveStatus;
    if (viewer.dirty() && status !== "Saving…" && !status.endsWith("unsaved")) {
      viewer.setSaveStatus("Unsaved changes", "warn");
    }
    this.refreshUndo();
  }

  private refreshUndo(): void {
    const editable = !!this.viewer.session?.editable;
    $<HTMLButtonElement>("#undo").disabled = !History.canUndo || !editable;
    $<HTMLButtonElement>("#redo").disabled = !History.canRedo || !editable;
  }

  cancel(): boolean {
    return false;
  }

  undo(): void {
    if (this.session.editable && History.canUndo) {
      History.undo();
      this.markEdited();
    }
  }

  redo(): void {
    if (this.session.editable && History.canRedo) {
      History.redo();
      this.markEdited();
    }
  }

  save(): void {
    void this.saveNow();
  }

  private async saveNow(force = false): Promise<boolean> {
    const { viewer, session } = this;
    if (!session.editable) return false;
    viewer.setSaveStatus("Saving…");
    $<HTMLButtonElement>("#save").disabled = true;
    const outcome = await session.save(this.scanLabels.values, force);
    $<HTMLButtonElement>("#save").disabled = false;
    switch (outcome.kind) {
      case "saved":
        viewer.setSaveStatus(
          `Saved · revision ${outcome.revision.number} · ${new Date().toLocaleTimeString()}`,
          "ok",
        );
        $("#preseg-banner").hidden = true;
        void viewer.batchNav();
        return true;
      case "nothing":
        viewer.setSaveStatus("Saved · no changes", "ok");
        return true;
      case "conflict":
        viewer.setSaveStatus("Conflict: not saved", "error");
        $("#conflict").hidden = false;
        $<HTMLButtonElement>("#reload").focus();
        return false;
      case "error":
        viewer.setSaveStatus(`Not saved: ${outcome.detail}`, "error");
        return false;
    }
  }

  private async submit(): Promise<void> {
    const { viewer, session } = this;
    if (!session.editable) return;
    const missing = this.scanLabels.missing();
    if (missing.length) {
      viewer.setSaveStatus(`Set ${missing.join(", ")} before submitting`, "error");
      $<HTMLSelectElement>("#scan-labels select").focus();
      return;
    }
    const sure = await confirmOnce(
      $("#submit"),
      "Submit this scan for checking? It becomes read-only until both checkers have given their verdicts.",
      "Submit for checking",
    );
    if (!sure) {
      $<HTMLButtonElement>("#submit").focus();
      return;
    }
    // What is submitted is a person's revision: a pre-segmentation head is saved as one first.
    const modelHead = session.head?.source !== "human";
    if ((modelHead || session.isDirty(this.scanLabels.values)) && !(await this.saveNow(modelHead)))
      return;
    try {
      viewer.setSaveStatus("Submitting…");
      await session.submit();
      viewer.setSaveStatus("Submitted for checking", "ok");
      viewer.setReadOnly(
        "Submitted for checking: read-only until the checkers have given their verdicts.",
      );
      await viewer.batchNav(true);
    } catch (error) {
      viewer.setSaveStatus(`Not submitted: ${errorMessage(error)}`, "error");
    }
  }

  private growOptions(): GrowOptions {
    const { viewer } = this;
    return {
      campaignId: viewer.campaignId,
      scanId: viewer.scanId,
      scene: viewer.scene!,
      labels: viewer.labels!,
      isActive: () => viewer.tools!.mode === "grow" && this.session.editable,
      tolerance: () => viewer.controls.tolerance(),
      radiusMm: () => viewer.controls.growRadius(),
      classValue: () => viewer.classPicker!.current,
      onStart: () => viewer.setSaveStatus("Growing region…"),
      onDone: (result, painted) => {
        viewer.hook.lastGrow = result;
        if (painted) this.markEdited();
        const capped = result.capped ? " (capped: lower the tolerance or the radius)" : "";
        const voxels = result.voxels.toLocaleString();
        viewer.setSaveStatus(
          painted
            ? `Grew ${voxels} voxels from ${Math.round(result.seed_hu)} HU${capped} · unsaved`
            : result.message || "No region grew from there",
          painted || result.capped ? "warn" : "",
        );
        this.refreshUndo();
      },
      onError: (error) =>
        viewer.setSaveStatus(`Region growing failed: ${errorMessage(error)}`, "error"),
    };
  }
}
