// `window.curatect`: a small read-only view of the viewer for browser tests (tests/browser/):
// wait for `ready`, compare the client's mask with the API's, find a voxel on screen.
import type { Finding } from "../api/qc";
import type { RegionGrowResult } from "../api/types";
import type { ToolMode } from "../tools/toolGroup";

export interface DebugHook {
  ready: boolean;
  error: string | null;
  /** ms after navigation: first CT image drawn, all frames fetched, everything drawn */
  firstImageMs: number | null;
  bulkFramesMs: number | null;
  loadTimeMs: number | null;
  /** [ms after navigation, frames loaded] as the volume streams in */
  progress: [number, number][];
  /** ms after navigation at which each loading step finished */
  marks: Record<string, number>;
  /** axial renders so far (each costs 0.2–0.8 s with software WebGL) */
  renders: number;
  saveStatus: string;
  lastGrow: RegionGrowResult | null;
  labelVoxelCount(): number;
  classCounts(): Record<string, number>;
  /** The axial slice shown, as the API's z (0 = the lowest slice). */
  sliceIndex(): number;
  currentZ(): number;
  headRevisionId(): number | null;
  annotationState(): string;
  dirty(): boolean;
  tool(): ToolMode;
  /** CSS-pixel position of voxel (z, y, x) in the axial view; shows that slice first. */
  canvasPointOf(z: number, y: number, x: number): [number, number];
  /** Check mode (?check= or ?spot_check=). */
  reviewing?: boolean;
  /** Check mode: the findings placed so far; otherwise the annotator's findings to fix. */
  findings?: () => Finding[];
  /** Finding markers drawn on the slice shown. */
  markers?: () => { slice: number; x: number; y: number; label: string }[];
}

declare global {
  interface Window {
    curatect: DebugHook;
  }
}

type Queries = Pick<
  DebugHook,
  | "labelVoxelCount"
  | "classCounts"
  | "currentZ"
  | "headRevisionId"
  | "annotationState"
  | "dirty"
  | "tool"
  | "canvasPointOf"
>;

export function installDebugHook(queries: Queries): DebugHook {
  const hook: DebugHook = {
    ready: false,
    error: null,
    firstImageMs: null,
    bulkFramesMs: null,
    loadTimeMs: null,
    progress: [],
    marks: {},
    renders: 0,
    saveStatus: "",
    lastGrow: null,
    ...queries,
    sliceIndex: queries.currentZ,
  };
  window.curatect = hook;
  return hook;
}

export function mark(hook: DebugHook, name: string): void {
  hook.marks[name] = Math.round(performance.now());
}
