// Types and calls of the data manager's API: batches and pre-segmentation, imports, dataset
// exports, model versions and training runs (platform_core/api_urls.py, modelassist/urls.py),
// and the quantification reports.
// Request bodies and batches are the generated schemas (types.ts); the rest is hand-written
// until the schema describes those answers.
import { request, upload, type Upload, type UploadProgress } from "./http";
import type { Schemas } from "./types";

export type BatchOut = Schemas["BatchOut"];

export type BatchBuildIn = Schemas["BatchBuildIn"];

export type PresegScanStatus = "queued" | "running" | "done" | "failed" | "lost" | string;

export interface PresegProgress {
  batch_id: number;
  status: "not_started" | "queued" | "running" | "done" | "done_with_failures";
  attempts?: number;
  counts: Record<string, number>;
  total?: number;
  progress?: number;
  scans: {
    scan_id: number;
    status: PresegScanStatus;
    model_label: string;
    model_version_id: number | null;
    revision_id: number | null;
    error: string;
    seconds: number | null;
  }[];
}

export const PRESEG_FINISHED = new Set(["not_started", "done", "done_with_failures"]);

export interface ImportReport {
  files_seen?: number;
  scans_created?: number[];
  scans_existing?: number[];
  rejected_files?: { file: string; reason: string }[];
  rejected_series?: { series: string; files: string[]; reason: string }[];
  error?: string;
}

export interface ImportJob {
  id: number;
  status: "queued" | "running" | "done" | "failed";
  progress: number;
  report: ImportReport;
  created_at: string;
  finished_at: string | null;
}

export type JobStatus = "queued" | "running" | "done" | "failed";

export interface DatasetExport {
  id: number;
  campaign: number;
  version: number | null;
  status: JobStatus;
  progress: number;
  message: string;
  path: string;
  content_sha256: string;
  summary: {
    cases?: number;
    splits?: Record<string, number>;
    institutions?: Record<string, string>;
    split_method?: "institution" | "patient";
    tested_on?: string;
    patients?: Record<string, number>;
    bytes?: number;
  };
  error: string;
  created_by: string | null;
  created_at: string;
  finished_at: string | null;
  download_url: string | null;
}

export interface DiceFigures {
  mean?: number | null;
  foreground?: number | null;
  per_class?: Record<string, number | null>;
}

export interface ModelMetrics {
  test_cases?: number;
  train_cases?: number;
  validation_cases?: number;
  candidate?: DiceFigures;
  incumbent?: DiceFigures & { label?: string };
  best_val_dice?: number | null;
  epochs_run?: number;
  split_method?: "institution" | "patient";
  tested_on?: string;
  needs_more_scans?: number;
  [key: string]: unknown;
}

export interface ModelVersion {
  id: number | null;
  name: string;
  label: string;
  architecture: string;
  sha256?: string;
  trained_on?: { id: number; version: number | null } | null;
  metrics: ModelMetrics;
  is_active: boolean;
  activated_at?: string | null;
  created_by?: string | null;
  created_at?: string;
}

export interface ModelVersions {
  active: ModelVersion;
  versions: ModelVersion[];
}

export interface EpochRecord {
  epoch: number;
  loss: number | null;
  val_dice: number | null;
  seconds: number;
}

export interface TrainingRun {
  id: number;
  campaign: number;
  status: JobStatus;
  trigger: string;
  progress: number;
  message: string;
  architecture: string;
  params: Record<string, number>;
  export: { id: number; version: number | null } | null;
  metrics: ModelMetrics;
  model_version: ModelVersion | null;
  promoted: boolean | null;
  decision: string;
  error: string;
  requested_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  history?: EpochRecord[];
}

export type TrainingRunIn = Schemas["TrainingRunIn"];

export interface RegionRow {
  name: string;
  kind: "zone" | "lobe";
  lung_volume_ml: number;
  lesion_volume_ml: number;
  percent_involved: number;
  severity_score: number;
}

export interface ScanReport {
  scan_id: number;
  campaign_id: number;
  patient: string;
  study_date: string | null;
  spacing_mm: { x: number; y: number; z: number };
  labels: {
    selected_by: string;
    revision_id: number;
    revision_number: number;
    source: string;
    author: string;
    created_at: string;
    annotation_state: string;
    curated: boolean;
  };
  lungs: { method: string; from_cache: boolean };
  voxel_volume_ml: number;
  lung_volume_ml: number;
  lesion_volume_ml: number;
  percent_of_lung_involved: number;
  lesion_volume_by_class_ml: Record<string, number>;
  other_opacity_by_hu_ml: {
    ground_glass_like_below_minus_350_hu_ml: number;
    consolidation_like_from_minus_350_hu_ml: number;
  } | null;
  region_kind: "zone" | "lobe";
  region_note: string;
  regions: RegionRow[];
  severity_score_total: number;
  severity_score_max: number;
  severity_bands: string;
}

export interface PatientReports {
  patient: string;
  campaign_id: number;
  scans: {
    scan_id: number;
    study_date: string | null;
    report: ScanReport | null;
    reason: string;
  }[];
  percent_of_lung_involved_over_time: {
    study_date: string | null;
    scan_id: number;
    percent_of_lung_involved: number;
    lesion_volume_ml: number;
    severity_score_total: number;
  }[];
}

export const manageApi = {
  batches: (campaignId: number) => request<BatchOut[]>(`/api/campaigns/${campaignId}/batches/`),
  buildBatch: (campaignId: number, body: BatchBuildIn) =>
    request<BatchOut>(`/api/campaigns/${campaignId}/batches/`, { method: "POST", body }),
  /** annotatorId null: the least-loaded annotator of the campaign. */
  assignBatch: (batchId: number, annotatorId: number | null) =>
    request<BatchOut>(`/api/batches/${batchId}/assign/`, {
      method: "POST",
      body: { annotator_id: annotatorId },
    }),
  closeBatch: (batchId: number) =>
    request<BatchOut>(`/api/batches/${batchId}/close/`, { method: "POST" }),

  preseg: (batchId: number) => request<PresegProgress>(`/api/batches/${batchId}/presegmentation/`),
  presegRerun: (batchId: number) =>
    request<PresegProgress>(`/api/batches/${batchId}/presegmentation/`, { method: "POST" }),

  startImport: (form: FormData, onProgress: (p: UploadProgress) => void): Upload<ImportJob> =>
    upload<ImportJob>("/api/imports/", form, onProgress),
  importJob: (id: number) => request<ImportJob>(`/api/imports/${id}/`),

  exports: (campaignId: number) =>
    request<DatasetExport[]>(`/api/campaigns/${campaignId}/exports/`),
  startExport: (campaignId: number) =>
    request<DatasetExport>(`/api/campaigns/${campaignId}/exports/`, { method: "POST" }),
  exportJob: (id: number) => request<DatasetExport>(`/api/exports/${id}/`),

  modelVersions: (campaignId: number) =>
    request<ModelVersions>(`/api/campaigns/${campaignId}/model-versions/`),
  activateModel: (versionId: number, reason: string) =>
    request<ModelVersion>(`/api/model-versions/${versionId}/activate/`, {
      method: "POST",
      body: { reason },
    }),
  useBaseline: (campaignId: number, reason: string) =>
    request<ModelVersion>(`/api/campaigns/${campaignId}/model-versions/deactivate/`, {
      method: "POST",
      body: { reason },
    }),

  trainingRuns: (campaignId: number) =>
    request<TrainingRun[]>(`/api/campaigns/${campaignId}/training-runs/`),
  startTraining: (campaignId: number, body: TrainingRunIn) =>
    request<TrainingRun>(`/api/campaigns/${campaignId}/training-runs/`, { method: "POST", body }),
  trainingRun: (id: number) => request<TrainingRun>(`/api/training-runs/${id}/`),

  report: (campaignId: number, scanId: number, revision?: string) =>
    request<ScanReport>(`/api/campaigns/${campaignId}/scans/${scanId}/report/`, {
      query: { revision },
    }),
  patientReports: (pseudonym: string, campaignId: number) =>
    request<PatientReports>(`/api/patients/${encodeURIComponent(pseudonym)}/reports/`, {
      query: { campaign: campaignId },
    }),
};
