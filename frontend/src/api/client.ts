// Typed calls of the annotator's API: me, campaigns, scans, the worklist, annotations, label
// volumes, revisions, submit and the region-growing brush. Requests go through http.ts.
import { ApiError, readJson, request, requestBytes, send } from "./http";
import type {
  Annotation,
  Campaign,
  Me,
  RegionGrowRequest,
  RegionGrowResult,
  RevisionCreate,
  RevisionHead,
  Scan,
  WorklistBatch,
} from "./types";

/** "rev-12" from an ETag header value like `"rev-12"` or `W/"rev-12"`. */
export function revisionIdFromEtag(etag: string | null): number | null {
  const match = etag?.match(/rev-(\d+)/);
  return match ? Number(match[1]) : null;
}

export const etagFor = (revisionId: number): string => `"rev-${revisionId}"`;

const annotationPath = (campaignId: number, scanId: number) =>
  `/api/campaigns/${campaignId}/scans/${scanId}`;

export interface LabelVolume {
  /** zstd frame of the raw uint8 (z, y, x) volume */
  compressed: Uint8Array;
  shape: [number, number, number];
  encoding: string;
  revisionId: number | null;
}

export const api = {
  me: () => request<Me>("/api/me/"),
  campaign: (id: number) => request<Campaign>(`/api/campaigns/${id}/`),
  scan: (id: number) => request<Scan>(`/api/scans/${id}/`),
  worklist: () => request<WorklistBatch[]>("/api/worklist/"),

  annotation: (campaignId: number, scanId: number) =>
    request<Annotation>(`${annotationPath(campaignId, scanId)}/annotation/`),

  /** The label volume of a revision (the head when omitted); null when none exists yet. */
  async labels(
    campaignId: number,
    scanId: number,
    revisionId?: number,
  ): Promise<LabelVolume | null> {
    let answer: { bytes: Uint8Array; headers: Headers };
    try {
      answer = await requestBytes(`${annotationPath(campaignId, scanId)}/annotation/labels/`, {
        query: { revision: revisionId },
        // DRF negotiates even for this binary view: accept anything (JSON errors included).
        accept: "application/octet-stream, */*;q=0.5",
      });
    } catch (error) {
      // 404 {"code": "no_revision"}: no revision yet (any 404 here means no labels to show).
      if (error instanceof ApiError && error.status === 404) {
        return null;
      }
      throw error;
    }
    const { bytes, headers } = answer;
    const shape = (headers.get("X-Label-Shape") ?? "").split(",").map(Number) as [
      number,
      number,
      number,
    ];
    return {
      compressed: bytes,
      shape,
      encoding: headers.get("X-Label-Encoding") ?? "zstd",
      revisionId: revisionIdFromEtag(headers.get("ETag")),
    };
  },

  async createRevision(
    campaignId: number,
    scanId: number,
    parentId: number | null,
    body: RevisionCreate,
  ): Promise<{ revision: RevisionHead; revisionId: number }> {
    const headers: Record<string, string> = {};
    if (parentId !== null) headers["If-Match"] = etagFor(parentId);
    const response = await send(`${annotationPath(campaignId, scanId)}/annotation/revisions/`, {
      method: "POST",
      body: parentId === null ? { ...body, parent_id: null } : body,
      headers,
    });
    const payload = await readJson<{ revision?: RevisionHead } & RevisionHead>(response);
    const revision = payload.revision ?? payload;
    const revisionId = revisionIdFromEtag(response.headers.get("ETag")) ?? revision.id;
    return { revision, revisionId };
  },

  submit: (campaignId: number, scanId: number, headId: number) =>
    request<unknown>(`${annotationPath(campaignId, scanId)}/annotation/submit/`, {
      method: "POST",
      body: {},
      headers: { "If-Match": etagFor(headId) },
    }),

  regionGrow: (campaignId: number, scanId: number, body: RegionGrowRequest) =>
    request<RegionGrowResult>(`${annotationPath(campaignId, scanId)}/region-grow/`, {
      method: "POST",
      body,
    }),
};
