// Relabel a region with one click: the clicked voxel's 3D connected region of its class
// (face neighbours, as the region-growing brush) becomes the current class, one undo step.
// Today one had to repaint it voxel by voxel.
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import type { LabelState } from "../viewer/labels";
import type { Scene } from "../viewer/scene";
import { plainClickVoxel } from "./clicks";
import { History } from "./history";

export interface RelabelOptions {
  scene: Scene;
  labels: LabelState;
  isActive: () => boolean;
  classValue: () => number;
  /** `from` 0: the click hit background; voxels 0 with from === to: already that class. */
  onDone: (voxels: number, from: number, to: number) => void;
}

export interface RelabelResult {
  voxels: number;
  from: number;
  memo: { restoreMemo: (undo?: boolean) => void; id: string; operationType: string } | null;
}

/**
 * Flood from server voxel (z, y, x) over voxels of its class, writing `to` as it goes (a
 * voxel written is no longer of the class, so it is never visited twice: no visited array
 * over a 78 MB volume). Returns the undo memo of exactly those voxels.
 */
export function relabelRegion(
  labels: LabelState,
  scene: Scene,
  seed: [number, number, number],
  to: number,
): RelabelResult {
  const [z0, y0, x0] = seed;
  const { rows, cols, slices } = labels;
  const size = rows * cols;
  const from = labels.slice(z0)[y0 * cols + x0];
  if (from === 0 || from === to) return { voxels: 0, from, memo: null };
  let visited = new Int32Array(4096); // z * size + (y * cols + x) of each relabelled voxel
  let n = 0;
  const push = (z: number, offset: number, slice: Uint8Array) => {
    if (slice[offset] !== from) return;
    slice[offset] = to;
    if (n === visited.length) {
      const bigger = new Int32Array(visited.length * 2);
      bigger.set(visited);
      visited = bigger;
    }
    visited[n++] = z * size + offset;
  };
  push(z0, y0 * cols + x0, labels.slice(z0));
  for (let head = 0; head < n; head++) {
    const at = visited[head];
    const z = Math.floor(at / size);
    const offset = at - z * size;
    const x = offset % cols;
    const slice = labels.slice(z);
    if (x > 0) push(z, offset - 1, slice);
    if (x < cols - 1) push(z, offset + 1, slice);
    if (offset >= cols) push(z, offset - cols, slice);
    if (offset < size - cols) push(z, offset + cols, slice);
    if (z > 0) push(z - 1, offset, labels.slice(z - 1));
    if (z < slices - 1) push(z + 1, offset, labels.slice(z + 1));
  }
  const cells = visited.slice(0, n);
  const touched = touchedSlices(scene, cells, size);
  scene.labelsChanged(touched);
  const restoreMemo = (undo?: boolean) => {
    const value = undo ? from : to;
    for (let m = 0; m < cells.length; m++) {
      const z = Math.floor(cells[m] / size);
      labels.slice(z)[cells[m] - z * size] = value;
    }
    scene.labelsChanged(touched);
  };
  return {
    voxels: n,
    from,
    memo: { restoreMemo, id: `relabel-${Date.now()}`, operationType: "labelmap" },
  };
}

/** Cornerstone's slices k of the server slices z the cells lie in. */
function touchedSlices(scene: Scene, cells: Int32Array, size: number): number[] {
  const zs = new Set<number>();
  for (let m = 0; m < cells.length; m++) zs.add(Math.floor(cells[m] / size));
  return [...zs].map((z) => scene.zToK[z]);
}

/** Listen for clicks on a viewport element while the relabel tool is active. */
export function attachRelabel(element: HTMLElement, options: RelabelOptions): () => void {
  const onClick = (evt: Event) => {
    if (!options.isActive()) return;
    const voxel = plainClickVoxel(evt, options.scene);
    if (!voxel) return;
    const to = options.classValue();
    const result = relabelRegion(options.labels, options.scene, voxel, to);
    if (result.memo) History.push(result.memo);
    options.onDone(result.voxels, result.from, to);
  };
  element.addEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
  return () => element.removeEventListener(ToolEnums.Events.MOUSE_CLICK, onClick);
}
