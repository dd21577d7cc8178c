// The 3D region-growing brush: a click gives the seed, the server grows the region in 3D
// (intensity tolerance around the seed's HU), and the returned box mask is painted into the
// labelmap with the current class as one undoable step.
import type { Types } from "@cornerstonejs/core";
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import { api } from "../api/client";
import { base64Decode, zstd } from "../api/encoding";
import type { RegionGrowResult } from "../api/types";
import type { LabelState } from "../viewer/labels";
import type { Scene } from "../viewer/scene";
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
  onStart: (seed: [number, number, number]) => void;
  onDone: (result: RegionGrowResult, painted: boolean) => void;
  onError: (error: unknown) => void;
}

export function decodeMask(result: RegionGrowResult): Uint8Array {
  const mask = zstd(base64Decode(result.data));
  const [d, h, w] = result.shape;
  if (mask.length !== d * h * w) throw new Error("region-grow mask does not match its shape");
  return mask;
}

/** Grow from server voxel (z, y, x) and paint the result; resolves with the server's answer. */
export async function growAt(
  options: GrowOptions,
  seed: [number, number, number],
): Promise<RegionGrowResult> {
  options.onStart(seed);
  const result = await api.regionGrow(options.campaignId, options.scanId, {
    seed,
    tolerance: options.tolerance(),
    radius_mm: options.radiusMm(),
    connectivity: 6,
  });
  let painted = false;
  if (result.voxels > 0) {
    const memo = options.labels.paintMask(
      result.offset,
      result.shape,
      decodeMask(result),
      options.classValue(),
    );
    if (memo) {
      History.push(memo);
      painted = true;
    }
  }
  options.onDone(result, painted);
  return result;
}

/** Listen for clicks on a viewport element while the grow tool is active. */
export function attachRegionGrow(element: HTMLElement, options: GrowOptions): () => void {
  let busy = false;
  const onClick = async (evt: Event) => {
    if (!options.isActive() || busy) return;
    const detail = (evt as CustomEvent).detail as {
      event?: MouseEvent;
      currentPoints: { world: Types.Point3 };
    };
    if (
      detail.event &&
      (detail.event.button !== 0 || detail.event.shiftKey || detail.event.ctrlKey)
    )
      return;
    const ijk = options.scene.worldToIJK(detail.currentPoints.world);
    if (!ijk) return;
    const [i, j, k] = ijk;
    busy = true;
    try {
      await growAt(options, [options.scene.kToZ[k], j, i]);
    } catch (error) {
      options.onError(error);
    } finally {
      busy = false;
    }
  };
  element.addEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
  return () => element.removeEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
}
