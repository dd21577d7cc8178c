// "Paint inside lungs only" (as Slicer's masking offers): the brush and the region-growing
// brush stay inside the scan's one lung mask, the baseline's that model assist computes
// (GET .../lung-mask/). A scan without one says so, and painting is unrestricted.
//
// The brush is Cornerstone's circle fill with one more composition: its "is in threshold"
// test, asked for every voxel the stroke covers, answers false outside the lungs while the
// gate is on. The eraser is never limited (removing paint outside the lungs is what one wants).
import { Enums as ToolEnums } from "@cornerstonejs/tools";
import BrushStrategy from "@cornerstonejs/tools/tools/segmentation/strategies/BrushStrategy";
import { CIRCLE_STRATEGY } from "@cornerstonejs/tools/tools/segmentation/strategies/fillCircle";

import { zstd } from "../api/encoding";
import { ApiError, requestBytes } from "../api/http";
import type { Scene } from "../viewer/scene";

/** The lung mask in Cornerstone's index space (i + j·cols + k·cols·rows), 1 inside. */
export class LungGate {
  private inside: Uint8Array | null = null;
  /** Whether painting is limited now (on, and the scan has a mask). */
  on = true;

  get available(): boolean {
    return this.inside !== null;
  }

  get active(): boolean {
    return this.on && this.inside !== null;
  }

  /** Take the server's (z, y, x) mask; Cornerstone's slices k are matched to z by the scene. */
  load(mask: Uint8Array, scene: Scene): void {
    const [cols, rows, slices] = scene.dims;
    const size = cols * rows;
    if (mask.length !== size * slices) throw new Error("the lung mask does not match the scan");
    const inside = new Uint8Array(mask.length);
    for (let k = 0; k < slices; k++) {
      const z = scene.kToZ[k];
      const source = mask.subarray(z * size, (z + 1) * size);
      const target = inside.subarray(k * size, (k + 1) * size);
      for (let n = 0; n < size; n++) target[n] = source[n] ? 1 : 0;
    }
    this.inside = inside;
  }

  /** Whether Cornerstone voxel `index` may be painted. */
  allows(index: number): boolean {
    return !this.active || this.inside![index] === 1;
  }
}

/** The one gate of this page (one viewer, one scan at a time). */
export const lungGate = new LungGate();

const lungsOnly = {
  [ToolEnums.StrategyCallbacks.CreateIsInThreshold]: () =>
    lungGate.active ? (index: number) => lungGate.allows(index) : undefined,
};

/** The brush's fill: Cornerstone's circle, plus the lung gate. */
export const maskedFillInsideCircle = new BrushStrategy(
  "CurateMaskedCircle",
  ...CIRCLE_STRATEGY.compositions,
  lungsOnly,
).strategyFunction;

export type LungMaskAnswer = { mask: Uint8Array } | { missing: string };

/** The scan's lung mask, or why there is none (404 no_lung_mask: never computed for it). */
export async function fetchLungMask(campaignId: number, scanId: number): Promise<LungMaskAnswer> {
  try {
    const { bytes } = await requestBytes(
      `/api/campaigns/${campaignId}/scans/${scanId}/lung-mask/`,
      { accept: "application/octet-stream, */*;q=0.5" },
    );
    return { mask: zstd(bytes) };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return { missing: "none until the baseline pre-segmentation or the scan's report has run" };
    }
    throw error;
  }
}
