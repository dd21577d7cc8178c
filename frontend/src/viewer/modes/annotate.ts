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
import { fetchLungMask, lungGate } from "../../tools/lungMask";
import { attachRegionGrow, RegionGrower, type GrowOptions } from "../../tools/regionGrow";
import { attachRelabel } from "../../tools/relabel";
import type { ToolMode } from "../../tools/toolGroup";
import { $, el } from "../../panels/dom";
import type { RegionGrowResult } from "../../api/types";
import type { Viewer } from "../viewer";
import type { ViewerMode } from "./mode";

/** How the read-only banner names an annotation state the annotator cannot edit in. */
const STATE_WORDS: Record<string, string> = {
  submitted: "in check",
  checked: "checked",
  spot_check: "in the senior's spot check",
  curated: "curated",
};

/** Classes that are not lesions (painted outside the lungs on purpose): the lung gate is off. */
const NOT_A_LESION = /lung|lobe|airway|vessel|pleura|chest wall|body|heart/i;

const mm3 = (v: number) => v.toLocaleString(undefined, { maximumFractionDigits: 1 });

export class AnnotateMode implements ViewerMode {
  readonly kind = "annotate";
  readonly annotation: Promise<Annotation>;
  readonly labels: Promise<LabelVolume | null>;
  private readonly fixes: Promise<AnnotatorFindings | null>;
  private marked: MarkedFinding[] = [];
  private grower: RegionGrower | null = null;
  /** The class the lung gate was last set for; a new class sets it to that class's default. */
  private gateClass: number | null = null;
  private lungMissing: string | null = null;

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
      if (stroke) this.grower?.forgetLast(); // the wheel re-grows only the latest edit
      this.syncLungGate();
    });
    viewer.listen(window, "pointerup", () => {
      if (stroke) this.markEdited();
      stroke = false;
    });
    viewer.listen(eventTarget, ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, () =>
      this.refreshUndo(),
    );
    const options = this.growOptions();
    this.grower = new RegionGrower(options);
    viewer.onDestroy(attachRegionGrow($("#view-axial"), this.grower, options));
    viewer.onDestroy(
      attachRelabel($("#view-axial"), {
        scene: viewer.scene!,
        labels: viewer.labels!,
        isActive: () => viewer.tools!.mode === "relabel" && this.session.editable,
        classValue: () => viewer.classPicker!.current,
        onDone: (voxels, from, to) => this.relabelled(voxels, from, to),
      }),
    );
    // Remove is relabel to background: a pre-segmentation's wrong blob goes in one click, not
    // stroke by stroke through every slice it spans.
    viewer.onDestroy(
      attachRelabel($("#view-axial"), {
        scene: viewer.scene!,
        labels: viewer.labels!,
        isActive: () => viewer.tools!.mode === "remove" && this.session.editable,
        classValue: () => 0,
        onDone: (voxels, from, to) => this.relabelled(voxels, from, to),
      }),
    );
    this.wireLungGate();
  }

  // --- "Paint inside lungs only" ---------------------------------------------------------

  private wireLungGate(): void {
    const { viewer } = this;
    const box = el("input", { type: "checkbox", id: "lungs-only", checked: lungGate.on });
    const note = el(
      "p",
      { id: "lungs-only-note", className: "muted small" },
      "Lung mask: loading…",
    );
    $("#grow-radius")
      .closest("label")!
      .after(
        el(
          "label",
          { className: "check", title: "Brush and grow paint only inside the lung mask (I)" },
          box,
          " Paint inside lungs only ",
          el("kbd", {}, "I"),
        ),
        note,
      );
    viewer.listen(box, "change", () => {
      lungGate.on = box.checked;
      this.showLungGate();
    });
    viewer.listen(window, "keydown", (evt: KeyboardEvent) => {
      const typing =
        evt.target instanceof HTMLElement && evt.target.matches("input, select, textarea");
      if (evt.key.toLowerCase() !== "i" || evt.ctrlKey || evt.metaKey || evt.altKey || typing)
        return;
      if (!this.session.editable) return;
      lungGate.on = !lungGate.on;
      this.showLungGate();
    });
  }

  /** A newly chosen class sets the gate to its default: on for lesions, off otherwise. */
  private syncLungGate(): void {
    const current = this.viewer.classPicker?.currentClass;
    if (!current || current.value === this.gateClass) return;
    this.gateClass = current.value;
    lungGate.on = !NOT_A_LESION.test(current.name);
    this.showLungGate();
  }

  private showLungGate(): void {
    const box = document.querySelector<HTMLInputElement>("#lungs-only");
    const note = document.querySelector<HTMLElement>("#lungs-only-note");
    if (!box || !note) return;
    box.checked = lungGate.on;
    box.disabled = !lungGate.available || !this.session.editable;
    if (this.lungMissing) {
      note.textContent = `No lung mask for this scan (${this.lungMissing}): painting is unrestricted.`;
    } else if (!lungGate.available) {
      note.textContent = "Lung mask: loading…";
    } else {
      note.textContent = lungGate.on
        ? "Brush and grow paint inside the lungs only."
        : "Painting is unrestricted (press I to keep it inside the lungs).";
    }
    note.dataset.state = this.lungMissing ? "missing" : lungGate.active ? "on" : "off";
  }

  private async loadLungMask(): Promise<void> {
    const { viewer } = this;
    try {
      const answer = await fetchLungMask(viewer.campaignId, viewer.scanId);
      if ("mask" in answer) lungGate.load(answer.mask, viewer.scene!);
      else this.lungMissing = answer.missing;
    } catch (error) {
      this.lungMissing = `it could not be loaded: ${errorMessage(error)}`;
    }
    this.syncLungGate();
    this.showLungGate();
  }

  private relabelled(voxels: number, from: number, to: number): void {
    const { viewer } = this;
    // The class picker shows each class's name beside its radio.
    const name = (v: number) =>
      document
        .querySelector(`#class-picker input[value="${v}"]`)
        ?.parentElement?.querySelector("span:not(.swatch)")?.textContent ?? `class ${v}`;
    if (!voxels) {
      viewer.setSaveStatus(
        from === 0
          ? `Nothing to ${to === 0 ? "remove" : "relabel"} there: click a labelled region`
          : `That region is ${name(to)} already`,
      );
      return;
    }
    this.grower?.forgetLast();
    this.markEdited();
    viewer.setSaveStatus(
      to === 0
        ? `Removed ${voxels.toLocaleString()} voxels of ${name(from)} · unsaved`
        : `Relabelled ${voxels.toLocaleString()} voxels from ${name(from)} to ${name(to)} · unsaved`,
      "warn",
    );
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
    if (this.session.editable) void this.loadLungMask();
    else this.showLungGate();
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
      this.grower?.forgetLast();
      History.undo();
      this.markEdited();
    }
  }

  redo(): void {
    if (this.session.editable && History.canRedo) {
      this.grower?.forgetLast();
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
      withinLungs: () => {
        this.syncLungGate();
        return lungGate.active;
      },
      onStart: () => viewer.setSaveStatus("Growing region…"),
      onDone: (result, painted, live) => {
        viewer.hook.lastGrow = result;
        if (painted) this.markEdited();
        viewer.setSaveStatus(
          painted ? growWords(result, live) : result.message || "No region grew from there",
          painted || result.capped ? "warn" : "",
        );
        this.refreshUndo();
      },
      onError: (error) =>
        viewer.setSaveStatus(`Region growing failed: ${errorMessage(error)}`, "error"),
    };
  }
}

/** "Grew 295 voxels · 180.6 mm³ …": the size at once, then what stopped it and what next. */
function growWords(result: RegionGrowResult, live: { radiusMm: number } | null): string {
  const size = `${result.voxels.toLocaleString()} voxels · ${mm3(result.volume_mm3)} mm³`;
  const parts = [live ? `Grew ${size} at a ${live.radiusMm} mm radius` : `Grew ${size}`];
  if (result.capped) parts.push("capped: lower the tolerance or the radius");
  else if (result.leak_cut_mm !== null) parts.push(`stopped at a narrow neck (a vessel?)`);
  if (result.within_lungs) parts.push("inside the lungs");
  parts.push("Alt+wheel: wider / narrower", "unsaved");
  return parts.join(" · ");
}
