// The 3D region-growing brush: a click gives the seed, the server grows the region in 3D
// (intensity tolerance around the seed's HU), and the returned box mask is painted into the
// labelmap with the current class as one undoable step.
//
// The first click is conservative: the server's leak check cuts the region at a narrow neck
// (a nodule's vessel). Alt + wheel then widens or narrows that last grow live: the same seed
// grown again at a larger or smaller radius, without the leak check (the hand asked for that
// size), replacing the last grow's paint within the same undo step.
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import { api } from "../api/client";
import { base64Decode, zstd } from "../api/encoding";
import type { RegionGrowResult } from "../api/types";
import type { LabelState } from "../viewer/labels";
import type { Scene } from "../viewer/scene";
import { plainClickVoxel } from "./clicks";
import { History } from "./history";

export interface GrowOptions {
  campaignId: number;
  scanId: number;
  scene: Scene;
  labels: LabelState;
  isActive: () => boolean;
  tolerance: () => number;
  radiusMm: () => number;
  classValue: () => number;
  /** Whether "paint inside lungs only" limits the grow now. */
  withinLungs: () => boolean;
  onStart: (seed: [number, number, number]) => void;
  /** `live`: an Alt+wheel re-grow of the last one (radius in mm it grew to). */
  onDone: (result: RegionGrowResult, painted: boolean, live: { radiusMm: number } | null) => void;
  onError: (error: unknown) => void;
}

/** Alt+wheel steps the radius by this factor (wider up, narrower down), within these bounds. */
const WHEEL_FACTOR = 1.25;
const MIN_RADIUS_MM = 2;
const MAX_RADIUS_MM = 150;

type Memo = { restoreMemo: (undo?: boolean) => void; id: string; operationType: string };

/** One undo step whose paint a live re-grow may replace while it is the last edit. */
class GrowStep implements Memo {
  readonly id = `grow-${Date.now()}`;
  readonly operationType = "labelmap";
  applied = true;

  constructor(public paint: Memo | null) {}

  restoreMemo(undo?: boolean): void {
    this.paint?.restoreMemo(undo);
    this.applied = !undo;
  }
}

interface LastGrow {
  seed: [number, number, number];
  radiusMm: number;
  classValue: number;
  step: GrowStep;
}

export function decodeMask(result: RegionGrowResult): Uint8Array {
  const mask = zstd(base64Decode(result.data));
  const [d, h, w] = result.shape;
  if (mask.length !== d * h * w) throw new Error("region-grow mask does not match its shape");
  return mask;
}

function clampRadius(mm: number): number {
  return Math.round(Math.min(MAX_RADIUS_MM, Math.max(MIN_RADIUS_MM, mm)) * 10) / 10;
}

export class RegionGrower {
  private last: LastGrow | null = null;
  private busy = false;
  private pendingRadius: number | null = null;

  constructor(private readonly options: GrowOptions) {}

  /** Another edit (a stroke, an undo, a redo) came after the last grow: the wheel leaves it. */
  forgetLast(): void {
    this.last = null;
  }

  get hasLast(): boolean {
    return this.last !== null && this.last.step.applied;
  }

  private request(seed: [number, number, number], radiusMm: number, leakCheck: boolean) {
    return api.regionGrow(this.options.campaignId, this.options.scanId, {
      seed,
      tolerance: this.options.tolerance(),
      radius_mm: radiusMm,
      connectivity: 6,
      leak_check: leakCheck,
      within_lungs: this.options.withinLungs(),
    });
  }

  private paint(result: RegionGrowResult, value: number): Memo | null {
    if (result.voxels <= 0) return null;
    return this.options.labels.paintMask(result.offset, result.shape, decodeMask(result), value);
  }

  /** Grow from server voxel (z, y, x) and paint the result; resolves with the server's answer. */
  async growAt(seed: [number, number, number]): Promise<RegionGrowResult> {
    const { options } = this;
    options.onStart(seed);
    const radiusMm = options.radiusMm();
    const result = await this.request(seed, radiusMm, true);
    const classValue = options.classValue();
    const paint = this.paint(result, classValue);
    const step = new GrowStep(paint);
    if (paint) History.push(step);
    this.last = paint ? { seed, radiusMm: result.leak_cut_mm ?? radiusMm, classValue, step } : null;
    options.onDone(result, paint !== null, null);
    return result;
  }

  /** Alt+wheel: grow the last seed again, `direction` 1 wider, -1 narrower. */
  async regrow(direction: 1 | -1): Promise<void> {
    const last = this.last;
    if (!last || !last.step.applied) return;
    const base = this.pendingRadius ?? last.radiusMm;
    const radius = clampRadius(direction > 0 ? base * WHEEL_FACTOR : base / WHEEL_FACTOR);
    if (radius === last.radiusMm && this.pendingRadius === null) return;
    this.pendingRadius = radius;
    if (this.busy) return; // the running grow picks the newest radius up when it ends
    this.busy = true;
    try {
      while (this.pendingRadius !== null && this.last === last) {
        const wanted = this.pendingRadius;
        this.pendingRadius = null;
        const result = await this.request(last.seed, wanted, false);
        if (this.last !== last || !last.step.applied) return; // another edit came meanwhile
        last.step.paint?.restoreMemo(true);
        last.step.paint = this.paint(result, last.classValue);
        last.radiusMm = wanted;
        this.options.onDone(result, last.step.paint !== null, { radiusMm: wanted });
      }
    } catch (error) {
      this.options.onError(error);
    } finally {
      this.busy = false;
      this.pendingRadius = null;
    }
  }
}

/** Listen for clicks on a viewport element while the grow tool is active, and for Alt+wheel. */
export function attachRegionGrow(
  element: HTMLElement,
  grower: RegionGrower,
  options: GrowOptions,
): () => void {
  let busy = false;
  const onClick = async (evt: Event) => {
    if (!options.isActive() || busy) return;
    const voxel = plainClickVoxel(evt, options.scene);
    if (!voxel) return;
    busy = true;
    try {
      await grower.growAt(voxel);
    } catch (error) {
      options.onError(error);
    } finally {
      busy = false;
    }
  };
  // Capture, on the viewport's element: before Cornerstone's own wheel listener scrolls.
  const onWheel = (evt: WheelEvent) => {
    if (!evt.altKey || !options.isActive() || !grower.hasLast) return;
    evt.preventDefault();
    evt.stopImmediatePropagation();
    if (evt.deltaY !== 0) void grower.regrow(evt.deltaY < 0 ? 1 : -1);
  };
  element.addEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
  element.addEventListener("wheel", onWheel, { capture: true, passive: false });
  return () => {
    element.removeEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
    element.removeEventListener("wheel", onWheel, { capture: true });
  };
}
