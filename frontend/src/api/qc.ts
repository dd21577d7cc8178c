// Types and calls of the three-step QC API (docs/api.md, "Three-step QC"; qc/apis.py).
// Every body is a generated schema (types.ts; qc/serializers.py describes the answers).
import { request } from "./http";
import type { Narrow, Schemas } from "./types";

export type Verdict = Schemas["ReviewVerdictEnum"];
export type FindingKind = Schemas["FindingKindEnum"];

export const FINDING_KINDS: { value: FindingKind; label: string }[] = [
  { value: "missed_lesion", label: "Missed lesion" },
  { value: "boundary", label: "Boundary" },
  { value: "wrong_class", label: "Wrong class" },
  { value: "wrong_scan_label", label: "Wrong scan label" },
  { value: "other", label: "Other" },
];

export const kindLabel = (kind: string): string =>
  FINDING_KINDS.find((k) => k.value === kind)?.label ?? kind;

/** slice is the API's z index; position is [x, y] in pixels. Both null only for a wrong scan label. */
export type Finding = Schemas["FindingOut"];

export type CampaignRef = Schemas["CampaignRefOut"];

export type CheckQueueItem = Schemas["CheckQueueItemOut"];

export type ReviewOut = Schemas["ReviewOut"];

export type CheckRound = Schemas["CheckRoundOut"];

/** `other`: the other checker's verdict, null until both verdicts of the round are in. */
export type CheckDetail = Schemas["CheckDetailOut"];

export type SpotCheckDetail = Schemas["SpotCheckDetailOut"];

export type VerdictIn = Narrow<Schemas["VerdictIn"], { findings: Finding[] }>;

export type AnnotatorFindings = Schemas["AnnotatorFindingsOut"];

export type BoardItem = Schemas["BoardItemOut"];

export type BatchBoard = Schemas["BatchBoardOut"];

export type Figures = Schemas["FiguresOut"];

export type CheckerFigures = Schemas["CheckerFiguresOut"];

export type QcMetrics = Schemas["QcMetricsOut"];

const scanPath = (campaignId: number, scanId: number) =>
  `/api/campaigns/${campaignId}/scans/${scanId}`;

export const qcApi = {
  checks: () => request<CheckQueueItem[]>("/api/qc/checks/"),
  check: (id: number) => request<CheckDetail>(`/api/qc/checks/${id}/`),
  checkVerdict: (id: number, body: VerdictIn) =>
    request<CheckDetail>(`/api/qc/checks/${id}/verdict/`, { method: "POST", body }),

  spotChecks: () => request<SpotCheckDetail[]>("/api/qc/spot-checks/"),
  spotCheck: (id: number) => request<SpotCheckDetail>(`/api/qc/spot-checks/${id}/`),
  spotCheckVerdict: (id: number, body: VerdictIn) =>
    request<SpotCheckDetail>(`/api/qc/spot-checks/${id}/verdict/`, { method: "POST", body }),

  findings: (campaignId: number, scanId: number) =>
    request<AnnotatorFindings>(`${scanPath(campaignId, scanId)}/findings/`),

  board: (batchId: number) => request<BatchBoard>(`/api/batches/${batchId}/board/`),
  reopen: (batchId: number, reason: string, scanIds?: number[]) =>
    request<BatchBoard>(`/api/batches/${batchId}/reopen/`, {
      method: "POST",
      body: scanIds?.length ? { reason, scan_ids: scanIds } : { reason },
    }),

  metrics: (campaignId: number, batchId?: number | null) =>
    request<QcMetrics>("/api/qc/metrics/", { query: { campaign: campaignId, batch: batchId } }),

  auditCsvUrl: (campaignId: number, scanId: number) => `${scanPath(campaignId, scanId)}/audit.csv`,
};
