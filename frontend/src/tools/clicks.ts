// The one reading of a viewport click for the tools that act on a voxel (grow, relabel, remove): a plain
// left click (no Shift or Ctrl, which belong to window/level and panning) and its voxel.
import type { Types } from "@cornerstonejs/core";

import type { Scene } from "../viewer/scene";

/** The (z, y, x) voxel of a plain left click on the volume, or null for any other click. */
export function plainClickVoxel(evt: Event, scene: Scene): [number, number, number] | null {
  const detail = (evt as CustomEvent).detail as {
    event?: MouseEvent;
    currentPoints: { world: Types.Point3 };
  };
  if (detail.event && (detail.event.button !== 0 || detail.event.shiftKey || detail.event.ctrlKey))
    return null;
  const ijk = scene.worldToIJK(detail.currentPoints.world);
  if (!ijk) return null;
  const [i, j, k] = ijk;
  return [scene.kToZ[k], j, i];
}
