// Types of the CurateCT HTTP API (docs/api.md). Index order of label volumes is (z, y, x),
// z following the scan's `instances` list.

export type Role = "annotator" | "checker" | "senior" | "data_manager";

export interface Me {
  id: number;
  username: string;
  roles: Record<string, Role[]>;
  institutions: unknown[];
}

export interface LabelClass {
  value: number;
  name: string;
  color: string;
}

export interface ScanLabelField {
  key: string;
  name: string;
  required?: boolean;
  choices: string[];
}

export interface LabelSchema {
  classes: LabelClass[];
  scan_labels: ScanLabelField[];
}

export interface Campaign {
  id: number;
  slug: string;
  name: string;
  label_schema: LabelSchema;
  batch_size: number;
  checkers_per_annotation: number;
  spot_check_share: number;
}

export interface Scan {
  id: number;
  study_uid: string;
  series_uid: string;
  rows: number;
  columns: number;
  slices: number;
  spacing: [number, number, number];
  origin: [number, number, number];
  direction: number[] | number[][];
  instances: string[];
  gaps: unknown[];
}

export type ItemState =
  "not_started" | "in_progress" | "submitted" | "needs_revision" | "checked" | "curated";

export interface BatchItem {
  scan_id: number;
  position: number;
  state: ItemState;
}

export interface BatchProgress {
  total: number;
  not_started: number;
  in_progress: number;
  submitted: number;
  done: number;
}

export interface WorklistBatch {
  id: number;
  name: string;
  campaign: { id: number; slug: string; name: string };
  status: string;
  progress: BatchProgress;
  items: BatchItem[];
}

export interface RevisionHead {
  id: number;
  number: number;
  parent_id: number | null;
  author: string | number | null;
  source: string;
  scan_labels: Record<string, string>;
  voxel_counts: Record<string, number>;
  label_sha256: string;
  created_at: string;
}

export interface Annotation {
  id: number | null;
  state: string;
  head: RevisionHead | null;
}

export type BoxEncoding = "gzip" | "zstd";

export interface LabelBox {
  offset: [number, number, number];
  shape: [number, number, number];
  encoding: BoxEncoding;
  data: string;
}

export interface RevisionCreate {
  scan_labels: Record<string, string>;
  time_spent_s: number;
  boxes?: LabelBox[];
  full?: { encoding: BoxEncoding; data: string };
}

export interface RegionGrowRequest {
  seed: [number, number, number];
  lower?: number;
  upper?: number;
  tolerance?: number;
  connectivity: 6 | 26;
  radius_mm?: number;
  max_voxels?: number;
}

export interface RegionGrowResult {
  offset: [number, number, number];
  shape: [number, number, number];
  encoding: "zstd";
  data: string;
  voxels: number;
  capped: boolean;
  message: string;
  elapsed_ms: number;
  seed_hu: number;
}

export interface ApiErrorBody {
  detail?: string;
  code?: string;
  head?: RevisionHead;
  [key: string]: unknown;
}
