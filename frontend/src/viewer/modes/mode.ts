// What a mode of the viewer decides. The viewer (viewer/viewer.ts) owns Cornerstone, the views,
// the tools and the page's status lines; a mode owns what differs between annotating a scan and
// reviewing a revision of it (a checker's check, a senior's spot check).
import type { LabelVolume } from "../../api/client";
import type { Finding } from "../../api/qc";
import type { Annotation } from "../../api/types";
import type { BatchPlace } from "../../panels/batchNav";
import type { ToolMode } from "../../tools/toolGroup";

export interface ViewerMode {
  readonly kind: "annotate" | "review";
  /** The annotation to start from (review: a stand-in; the revision under review is shown). */
  readonly annotation: Promise<Annotation>;
  /** The label volume to show; null when the scan has none yet. */
  readonly labels: Promise<LabelVolume | null>;
  /** Where the scan sits in this person's batch (review: in none). */
  place(): Promise<BatchPlace>;
  /** Wire the mode's own controls and viewport gestures (once the scene has its labelmap). */
  wire(): void;
  /** The scan labels to show once the label volume is in; null keeps the panel as it is. */
  scanLabelValues(
    annotation: Annotation,
    labels: LabelVolume | null,
  ): Promise<Record<string, string> | null>;
  /** Editable, read-only, or under review: before the axial viewport joins the tool group. */
  showStartingPoint(annotation: Annotation): Promise<void>;
  /** Once the scan is on screen. */
  afterLoad(): Promise<void>;
  /** The editing state changed (a scan label, or the page became ready). */
  refresh(): void;
  mayUse(tool: ToolMode): boolean;
  toolChanged(tool: ToolMode): void;
  /** Something a reload would lose (unsaved labels, findings not sent). */
  hasUnsavedWork(): boolean;
  /** Check mode: the findings placed so far; annotating: the findings to fix. */
  findings(): Finding[];
  /** Esc: cancel what a click would do next (an armed finding placement); true if it did. */
  cancel(): boolean;
  undo(): void;
  redo(): void;
  save(): void;
}
