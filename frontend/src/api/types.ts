// Types of the CurateCT HTTP API. Most are the component schemas of Django's OpenAPI schema,
// generated into schema.d.ts by openapi-typescript (`make api-types`; `make lint` fails when
// schema.d.ts is stale), so that a changed serializer breaks `tsc` here, not a page at run time.
// Where the schema says less than the pages rely on (a JSON field typed `unknown`, a fixed-length
// list typed `number[]`), Narrow<> types those fields more exactly; a narrowed field that the
// schema no longer has is a compile error. Types the schema has no body for yet are hand-written
// and marked so. Index order of label volumes is (z, y, x), z following the scan's `instances`.
import type { components } from "./schema";

/** The API's component schemas, as generated. */
export type Schemas = components["schemas"];

/** Schema `T` with fields `N` typed more exactly; every key of `N` must be a field of `T`. */
export type Narrow<T, N extends { [K in keyof N]: K extends keyof T ? N[K] : never }> = Omit<
  T,
  keyof N
> &
  N;

export type Vec3 = [number, number, number];

export type Role = "annotator" | "checker" | "senior" | "data_manager";

export type Me = Schemas["MeOut"];

// Hand-written: the campaign's label schema is a JSON field (platform_core/label_schema.py),
// `unknown` in the OpenAPI schema.
export interface LabelClass {
  value: number;
  name: string;
  color: string;
}

// Hand-written, as LabelClass.
export interface ScanLabelField {
  key: string;
  name: string;
  required?: boolean;
  choices: string[];
}

// Hand-written, as LabelClass.
export interface LabelSchema {
  classes: LabelClass[];
  scan_labels: ScanLabelField[];
}

export type Campaign = Narrow<Schemas["CampaignOut"], { label_schema: LabelSchema }>;

export type Scan = Narrow<Schemas["ScanOut"], { spacing: Vec3; origin: Vec3 }>;

// Hand-written: the schema types an item's state as a plain string.
export type ItemState =
  "not_started" | "in_progress" | "submitted" | "needs_revision" | "checked" | "curated";

export type BatchItem = Narrow<Schemas["WorklistItemOut"], { state: ItemState }>;

// Hand-written: the schema types a batch's progress as a map of numbers.
export interface BatchProgress {
  total: number;
  not_started: number;
  in_progress: number;
  submitted: number;
  done: number;
}

export type WorklistBatch = Narrow<
  Schemas["WorklistBatchOut"],
  {
    campaign: { id: number; slug: string; name: string };
    progress: BatchProgress;
    items: BatchItem[];
  }
>;

export type RevisionHead = Schemas["RevisionOut"];

export type Annotation = Schemas["AnnotationOut"];

export type BoxEncoding = Schemas["EncodingEnum"];

export type LabelBox = Schemas["BoxIn"];

export type RevisionCreate = Schemas["RevisionIn"];

export type RegionGrowRequest = Schemas["RegionGrowIn"];

export type RegionGrowResult = Narrow<
  Schemas["RegionGrowOut"],
  { offset: Vec3; shape: Vec3; encoding: BoxEncoding }
>;

// Hand-written: error bodies (platform_core/api_errors.py) are not in the schema yet.
export interface ApiErrorBody {
  detail?: string;
  code?: string;
  head?: RevisionHead;
  [key: string]: unknown;
}
