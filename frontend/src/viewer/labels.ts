// The label volume on the client: load a revision into the labelmap, paint server masks,
// and find what changed since the last save (sent as boxes, never the whole 78 MB volume).
import type { LabelBox } from "../api/types";
import { base64Encode, gzip } from "../api/encoding";
import type { Scene } from "./scene";

export interface ChangedBox {
  offset: [number, number, number]; // z, y, x
  shape: [number, number, number]; // d, h, w
  data: Uint8Array; // current labels in the box, (z, y, x) order
}

/** Per server slice z: the labels as last saved (null: all background). */
export class LabelState {
  private saved: (Uint8Array | null)[];
  readonly rows: number;
  readonly cols: number;
  readonly slices: number;

  constructor(private readonly scene: Scene) {
    const [cols, rows, slices] = scene.dims;
    this.rows = rows;
    this.cols = cols;
    this.slices = slices;
    this.saved = new Array(slices).fill(null);
  }

  private get sliceSize(): number {
    return this.rows * this.cols;
  }

  /** Current labels of server slice z (a live view into the labelmap). */
  slice(z: number): Uint8Array {
    return this.scene.labelSlice(this.scene.zToK[z]);
  }

  /** Load a whole (z, y, x) label volume as the saved state and show it. */
  loadVolume(volume: Uint8Array, shape: [number, number, number]): void {
    const [d, h, w] = shape;
    if (d !== this.slices || h !== this.rows || w !== this.cols) {
      throw new Error(
        `label volume ${shape} does not match the scan (${this.slices},${this.rows},${this.cols})`,
      );
    }
    const size = this.sliceSize;
    for (let z = 0; z < d; z++) {
      const source = volume.subarray(z * size, (z + 1) * size);
      this.slice(z).set(source);
      this.saved[z] = hasNonZero(source) ? source.slice() : null;
    }
    this.scene.labelsChanged();
  }

  /**
   * Paint `value` where the (d, h, w) mask at offset (z, y, x) is set. Returns a memo that
   * undoes and redoes exactly this paint.
   */
  paintMask(
    offset: [number, number, number],
    shape: [number, number, number],
    mask: Uint8Array,
    value: number,
  ): { restoreMemo: (undo?: boolean) => void; id: string; operationType: string } | null {
    const [z0, y0, x0] = offset;
    const [d, h, w] = shape;
    const before = new Uint8Array(mask.length);
    const touched: number[] = [];
    let changed = 0;
    for (let dz = 0; dz < d; dz++) {
      const z = z0 + dz;
      if (z < 0 || z >= this.slices) continue;
      const slice = this.slice(z);
      let any = false;
      for (let dy = 0; dy < h; dy++) {
        const rowStart = (y0 + dy) * this.cols + x0;
        const maskRow = (dz * h + dy) * w;
        for (let dx = 0; dx < w; dx++) {
          const m = maskRow + dx;
          if (!mask[m]) continue;
          const idx = rowStart + dx;
          before[m] = slice[idx];
          if (slice[idx] !== value) {
            slice[idx] = value;
            changed++;
            any = true;
          }
        }
      }
      if (any) touched.push(this.scene.zToK[z]);
    }
    this.scene.labelsChanged(touched);
    if (!changed) return null;
    const restore = (undo?: boolean) => {
      for (let dz = 0; dz < d; dz++) {
        const z = z0 + dz;
        if (z < 0 || z >= this.slices) continue;
        const slice = this.slice(z);
        for (let dy = 0; dy < h; dy++) {
          const rowStart = (y0 + dy) * this.cols + x0;
          const maskRow = (dz * h + dy) * w;
          for (let dx = 0; dx < w; dx++) {
            const m = maskRow + dx;
            if (mask[m]) slice[rowStart + dx] = undo ? before[m] : value;
          }
        }
      }
      this.scene.labelsChanged(touched);
    };
    return { restoreMemo: restore, id: `grow-${Date.now()}`, operationType: "labelmap" };
  }

  /** Boxes around what changed since the last save: runs of changed slices, each with the
   * union of its slices' 2D bounding boxes. */
  changedBoxes(): ChangedBox[] {
    const boxes: ChangedBox[] = [];
    let run: { z0: number; z1: number; y0: number; y1: number; x0: number; x1: number } | null =
      null;
    const flush = () => {
      if (!run) return;
      boxes.push(this.extract(run.z0, run.z1, run.y0, run.y1, run.x0, run.x1));
      run = null;
    };
    for (let z = 0; z < this.slices; z++) {
      const bbox = diffBox(this.slice(z), this.saved[z], this.rows, this.cols);
      if (!bbox) {
        flush();
        continue;
      }
      const [y0, y1, x0, x1] = bbox;
      if (run) {
        run.z1 = z;
        run.y0 = Math.min(run.y0, y0);
        run.y1 = Math.max(run.y1, y1);
        run.x0 = Math.min(run.x0, x0);
        run.x1 = Math.max(run.x1, x1);
      } else {
        run = { z0: z, z1: z, y0, y1, x0, x1 };
      }
    }
    flush();
    return boxes;
  }

  private extract(
    z0: number,
    z1: number,
    y0: number,
    y1: number,
    x0: number,
    x1: number,
  ): ChangedBox {
    const d = z1 - z0 + 1;
    const h = y1 - y0 + 1;
    const w = x1 - x0 + 1;
    const data = new Uint8Array(d * h * w);
    for (let dz = 0; dz < d; dz++) {
      const slice = this.slice(z0 + dz);
      for (let dy = 0; dy < h; dy++) {
        const start = (y0 + dy) * this.cols + x0;
        data.set(slice.subarray(start, start + w), (dz * h + dy) * w);
      }
    }
    return { offset: [z0, y0, x0], shape: [d, h, w], data };
  }

  /** After a successful save: what is shown now is what the server has. */
  markSaved(boxes: ChangedBox[]): void {
    for (const box of boxes) {
      const [z0] = box.offset;
      for (let dz = 0; dz < box.shape[0]; dz++) {
        const current = this.slice(z0 + dz);
        this.saved[z0 + dz] = hasNonZero(current) ? current.slice() : null;
      }
    }
  }

  /** Server slices z that hold at least one labelled voxel now, in z order. */
  labelledSlices(): number[] {
    const out: number[] = [];
    for (let z = 0; z < this.slices; z++) if (hasNonZero(this.slice(z))) out.push(z);
    return out;
  }

  voxelCount(): number {
    let n = 0;
    for (let z = 0; z < this.slices; z++) {
      const slice = this.slice(z);
      for (let i = 0; i < slice.length; i++) if (slice[i]) n++;
    }
    return n;
  }

  classCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (let z = 0; z < this.slices; z++) {
      const slice = this.slice(z);
      for (let i = 0; i < slice.length; i++) {
        const v = slice[i];
        if (v) counts[v] = (counts[v] ?? 0) + 1;
      }
    }
    return counts;
  }
}

function hasNonZero(a: Uint8Array): boolean {
  if (a.byteOffset % 4 === 0 && a.length % 4 === 0) {
    const words = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    for (let i = 0; i < words.length; i++) if (words[i]) return true;
    return false;
  }
  for (let i = 0; i < a.length; i++) if (a[i]) return true;
  return false;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0 && a.length % 4 === 0) {
    const wa = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    const wb = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < wa.length; i++) if (wa[i] !== wb[i]) return false;
    return true;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** [y0, y1, x0, x1] of the voxels where `current` differs from `saved` (null: zeros). */
function diffBox(
  current: Uint8Array,
  saved: Uint8Array | null,
  rows: number,
  cols: number,
): [number, number, number, number] | null {
  // Fast path: most slices did not change; compare four voxels at a time first.
  if (saved ? equalBytes(current, saved) : !hasNonZero(current)) return null;
  let y0 = rows;
  let y1 = -1;
  let x0 = cols;
  let x1 = -1;
  for (let y = 0; y < rows; y++) {
    const start = y * cols;
    let first = -1;
    let last = -1;
    if (saved) {
      for (let x = 0; x < cols; x++) {
        if (current[start + x] !== saved[start + x]) {
          if (first < 0) first = x;
          last = x;
        }
      }
    } else {
      for (let x = 0; x < cols; x++) {
        if (current[start + x]) {
          if (first < 0) first = x;
          last = x;
        }
      }
    }
    if (first >= 0) {
      if (y < y0) y0 = y;
      y1 = y;
      if (first < x0) x0 = first;
      if (last > x1) x1 = last;
    }
  }
  return y1 < 0 ? null : [y0, y1, x0, x1];
}

export async function encodeBoxes(boxes: ChangedBox[]): Promise<LabelBox[]> {
  return Promise.all(
    boxes.map(async (box) => ({
      offset: box.offset,
      shape: box.shape,
      encoding: "gzip" as const,
      data: base64Encode(await gzip(box.data)),
    })),
  );
}
