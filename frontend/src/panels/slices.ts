// One slice convention for everything a person reads (issue #17): slices are numbered from 1 at
// the top of the scan (the head end), as PACS viewers show them; "next" is one slice towards the
// feet. The API keeps its 0-based z (the index into the scan's `instances`, sorted along the
// slice normal, smallest position first), so z = 0 is usually the slice nearest the feet.

/** What the numbering needs of a scan (the scan API gives both). */
export interface SliceGeometry {
  slices: number;
  /** 3 × 3 row-major: column, row and slice (normal) directions. */
  direction?: unknown;
}

/**
 * Whether z grows towards the head: the slice normal has a positive patient-z component
 * (DICOM's +z is superior). Assumed when the direction is not known (axial CT as scanned).
 */
function zGrowsCranially(g: SliceGeometry): boolean {
  const d = g.direction;
  const nz = Array.isArray(d) && d.length === 9 ? Number(d[8]) : 1;
  return !(nz < 0);
}

/** The 1-based number, counted from the head end, of server slice z. */
export function sliceNumber(z: number, g: SliceGeometry): number {
  return zGrowsCranially(g) ? g.slices - z : z + 1;
}

/** The server slice z of a 1-based number counted from the head end. */
export function sliceZ(n: number, g: SliceGeometry): number {
  return zGrowsCranially(g) ? g.slices - n : n - 1;
}

/** "slice 12" (numbered from the head end), or "slice index z" when the scan is unknown. */
export function sliceWords(z: number, g: SliceGeometry | null): string {
  return g ? `slice ${sliceNumber(z, g)}` : `slice index ${z}`;
}
