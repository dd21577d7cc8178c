// One annotation session: the head revision we edit on, saving changed boxes with If-Match,
// conflicts (409: someone saved after us) and submitting for checking.
import { api } from "../api/client";
import { ApiError } from "../api/http";
import type { Annotation, RevisionHead } from "../api/types";
import { encodeBoxes, type LabelState } from "./labels";
import { VisibleTimeTracker } from "./timeTracker";

/** Annotation states in which the annotator may save (annotation/models.py EDITABLE_STATES). */
const EDITABLE = new Set(["not_started", "in_progress", "needs_revision"]);

export type SaveOutcome =
  | { kind: "saved"; revision: RevisionHead; boxes: number; bytes: number }
  | { kind: "nothing" }
  | { kind: "conflict"; detail: string }
  | { kind: "error"; detail: string };

export class AnnotationSession {
  headId: number | null;
  head: RevisionHead | null;
  state: string;
  scanLabelsSaved: string;
  private labelsDirty = false;
  private saving: Promise<SaveOutcome> | null = null;
  readonly timer = new VisibleTimeTracker();

  constructor(
    readonly campaignId: number,
    readonly scanId: number,
    annotation: Annotation,
    private readonly labels: LabelState,
  ) {
    this.head = annotation.head;
    this.headId = annotation.head?.id ?? null;
    this.state = annotation.state;
    this.scanLabelsSaved = JSON.stringify(annotation.head?.scan_labels ?? {});
  }

  get editable(): boolean {
    return EDITABLE.has(this.state);
  }

  /** The labelmap was edited (brush, eraser, grow, undo, redo). */
  markLabelsDirty(): void {
    this.labelsDirty = true;
  }

  isDirty(scanLabels: Record<string, string>): boolean {
    return this.labelsDirty || JSON.stringify(scanLabels) !== this.scanLabelsSaved;
  }

  /** Save what changed since the last save as a new revision. `force`: save even if unchanged. */
  save(scanLabels: Record<string, string>, force = false): Promise<SaveOutcome> {
    this.saving ??= this.doSave(scanLabels, force).finally(() => (this.saving = null));
    return this.saving;
  }

  private async doSave(scanLabels: Record<string, string>, force: boolean): Promise<SaveOutcome> {
    const boxes =
      this.labelsDirty || force || this.headId === null ? this.labels.changedBoxes() : [];
    const labelsChanged = JSON.stringify(scanLabels) !== this.scanLabelsSaved;
    if (!boxes.length && !labelsChanged && !force && this.headId !== null) {
      this.labelsDirty = false;
      return { kind: "nothing" };
    }
    const encoded = await encodeBoxes(boxes);
    const seconds = this.timer.reset();
    try {
      const { revision, revisionId } = await api.createRevision(
        this.campaignId,
        this.scanId,
        this.headId,
        {
          scan_labels: scanLabels,
          time_spent_s: Math.round(seconds * 10) / 10,
          boxes: encoded,
        },
      );
      this.labels.markSaved(boxes);
      this.headId = revisionId;
      this.head = revision;
      this.scanLabelsSaved = JSON.stringify(scanLabels);
      this.labelsDirty = false;
      if (this.state === "not_started") this.state = "in_progress";
      return {
        kind: "saved",
        revision,
        boxes: boxes.length,
        bytes: encoded.reduce((n, b) => n + b.data.length, 0),
      };
    } catch (error) {
      this.timer.restore(seconds);
      if (error instanceof ApiError && error.status === 409) {
        return { kind: "conflict", detail: error.message };
      }
      return { kind: "error", detail: error instanceof Error ? error.message : String(error) };
    }
  }

  async submit(): Promise<void> {
    if (this.headId === null) throw new Error("save a revision before submitting");
    await api.submit(this.campaignId, this.scanId, this.headId);
    this.state = "submitted";
  }

  destroy(): void {
    this.timer.destroy();
  }
}
