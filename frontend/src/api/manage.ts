// Types and calls of the data manager's API: batches and pre-segmentation, imports, dataset
// exports, model versions and training runs (platform_core/api_urls.py, modelassist/urls.py),
// and the quantification reports.
// Every body is a generated schema (types.ts; modelassist/serializers.py describes the answers);
// JSON fields the schema types as `unknown` are narrowed with hand-written types.
import { request, upload, type Upload, type UploadProgress } from "./http";
import type { Narrow, Schemas } from "./types";

export type BatchOut = Schemas["BatchOut"];

export type BatchBuildIn = Schemas["BatchBuildIn"];

export type PresegScanStatus = Schemas["PresegStatusEnum"];

export type PresegProgress = Schemas["PresegProgressOut"];

export const PRESEG_FINISHED = new Set(["not_started", "done", "done_with_failures"]);

// Hand-written: an import's report is a JSON field (imaging/ingest), `unknown` in the schema.
export interface ImportReport {
  files_seen?: number;
  scans_created?: number[];
  scans_existing?: number[];
  rejected_files?: { file: string; reason: string }[];
  rejected_series?: { series: string; files: string[]; reason: string }[];
  error?: string;
}

export type ImportJob = Narrow<Schemas["ImportOut"], { report: ImportReport }>;

export type JobStatus = Schemas["JobStatusEnum"];

export type DatasetExport = Schemas["DatasetExportOut"];

// Hand-written: a model's figures are a JSON field (modelassist/services/training.py, federation),
// `unknown` in the schema.
export interface DiceFigures {
  mean?: number | null;
  foreground?: number | null;
  per_class?: Record<string, number | null>;
}

// Hand-written, as DiceFigures.
export interface ModelMetrics {
  test_cases?: number;
  train_cases?: number;
  validation_cases?: number;
  candidate?: DiceFigures;
  incumbent?: DiceFigures & { label?: string };
  best_val_dice?: number | null;
  epochs_run?: number;
  [key: string]: unknown;
}

export type ModelVersion = Narrow<Schemas["ModelVersionOut"], { metrics: ModelMetrics }>;

export type ModelVersions = Narrow<
  Schemas["ModelVersionsOut"],
  { active: ModelVersion; versions: ModelVersion[] }
>;

export type EpochRecord = Schemas["EpochOut"];

type TrainingRunNarrow = { metrics: ModelMetrics; model_version: ModelVersion | null };

export type TrainingRun = Narrow<Schemas["TrainingRunOut"], TrainingRunNarrow>;

export type TrainingRunDetail = Narrow<Schemas["TrainingRunDetailOut"], TrainingRunNarrow>;

export type TrainingRunIn = Schemas["TrainingRunIn"];

export type RegionRow = Schemas["RegionOut"];

export type ScanReport = Schemas["ScanReportOut"];

export type PatientReports = Schemas["PatientReportsOut"];

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
    request<TrainingRunDetail>(`/api/campaigns/${campaignId}/training-runs/`, {
      method: "POST",
      body,
    }),
  trainingRun: (id: number) => request<TrainingRunDetail>(`/api/training-runs/${id}/`),

  report: (campaignId: number, scanId: number, revision?: string) =>
    request<ScanReport>(`/api/campaigns/${campaignId}/scans/${scanId}/report/`, {
      query: { revision },
    }),
  patientReports: (pseudonym: string, campaignId: number) =>
    request<PatientReports>(`/api/patients/${encodeURIComponent(pseudonym)}/reports/`, {
      query: { campaign: campaignId },
    }),
};
