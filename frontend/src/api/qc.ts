// Types and calls of the three-step QC API (docs/api.md, "Three-step QC"; qc/apis.py).
// VerdictIn is the generated schema (types.ts); the answers are hand-written until the schema
// describes them.
import { request } from "./http";
import type { Narrow, Schemas } from "./types";

export type Verdict = "pending" | "pass" | "fail";
export type FindingKind =
  "missed_lesion" | "boundary" | "wrong_class" | "wrong_scan_label" | "other";

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
export interface Finding {
  slice: number | null;
  position: [number, number] | null;
  kind: FindingKind;
  text: string;
}

export interface CampaignRef {
  id: number;
  slug: string;
}

export interface CheckQueueItem {
  id: number;
  campaign: CampaignRef;
  scan_id: number;
  annotation_id: number;
  revision: { id: number; number: number };
  round: number;
  slot: "A" | "B";
  assigned_at: string;
}

export interface ReviewOut {
  slot: "A" | "B";
  label: string;
  verdict: Verdict;
  findings: Finding[];
  decided_at: string | null;
}

export interface CheckRound {
  round: number;
  revision_id: number;
  checks: ReviewOut[];
}

export interface CheckDetail {
  id: number;
  campaign: CampaignRef;
  scan_id: number;
  annotation_id: number;
  annotation_state: string;
  revision: {
    id: number;
    number: number;
    scan_labels: Record<string, string>;
    voxel_counts: Record<string, number>;
  };
  round: number;
  slot: "A" | "B";
  mine: boolean;
  verdict: Verdict;
  findings: Finding[];
  assigned_at: string;
  decided_at: string | null;
  time_spent_s: number;
  /** The other checker's verdict: null until both verdicts of the round are in. */
  other: ReviewOut | null;
  history: CheckRound[];
}

export interface SpotCheckDetail {
  id: number;
  campaign: CampaignRef;
  batch: { id: number; name: string };
  scan_id: number;
  annotation_id: number;
  annotation_state: string;
  revision: { id: number; number: number; scan_labels: Record<string, string> };
  draw: number;
  verdict: Verdict;
  findings: Finding[];
  assigned_at: string;
  decided_at: string | null;
  time_spent_s: number;
  check_rounds: CheckRound[];
}

export type VerdictIn = Narrow<Schemas["VerdictIn"], { findings: Finding[] }>;

export interface AnnotatorFindings {
  annotation_id: number | null;
  state: string;
  source: "checks" | "spot_check" | null;
  round: number | null;
  revision_id: number | null;
  reviews: { reviewer: string; verdict: Verdict; findings: Finding[]; decided_at: string | null }[];
}

export interface BoardItem {
  scan_id: number;
  position: number;
  annotation_id: number | null;
  state: string;
  head_revision_id: number | null;
  round: number;
  checkers: string[];
  checks: { slot: "A" | "B"; checker: string; verdict: Verdict | "hidden" }[];
  sampled: boolean;
  spot_check: { id: number; senior: string | null; verdict: Verdict } | null;
  holder: { role: "annotator" | "checker" | "senior" | null; users: string[] };
}

export interface BatchBoard {
  batch: { id: number; name: string; status: string; campaign_id: number; annotator: string };
  review: {
    state: "annotating" | "spot_check" | "approved";
    approved_at: string | null;
    draw: {
      number: number;
      seed: string;
      share: number;
      sample_size: number;
      sampled_scan_ids: number[];
      added_scan_ids: number[];
    } | null;
  };
  items: BoardItem[];
}

export interface Figures {
  scans: number;
  first_pass: { annotations: number; passed: number; rate: number | null };
  rounds_until_pass: {
    annotations: number;
    mean: number | null;
    distribution: Record<string, number>;
  };
  checker_agreement: { pairs: number; agreement: number | null; kappa: number | null };
  step3: { spot_checks: number; passed: number; rate: number | null };
  dice_consecutive_revisions: { pairs: number; mean: number | null };
  time_per_scan: Record<
    "annotator" | "checker" | "senior",
    { scans: number; total_s: number; mean_s_per_scan: number | null }
  >;
}

export interface CheckerFigures {
  user_id: number;
  username: string;
  checks: number;
  passed: number;
  pass_rate: number | null;
  agreement_with_partner: { pairs: number; agreement: number | null; kappa: number | null };
  time: { total_s: number; mean_s_per_check: number | null };
}

export interface QcMetrics {
  campaign: number;
  batch: number | null;
  overall: Figures;
  by_batch: (Figures & { batch_id: number; name: string; review_state: string })[];
  by_annotator: (Figures & { user_id: number; username: string })[];
  by_checker: CheckerFigures[];
}

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
