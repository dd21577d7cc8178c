// Typed client of the CurateCT API. Session auth: the CSRF token comes from the csrftoken
// cookie (or the page's <meta name="csrf-token">), sent on every unsafe request.
import type {
  Annotation,
  ApiErrorBody,
  Campaign,
  Me,
  RegionGrowRequest,
  RegionGrowResult,
  RevisionCreate,
  RevisionHead,
  Scan,
  WorklistBatch,
} from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
  ) {
    super(body.detail ?? `request failed with HTTP ${status}`);
  }
  get code(): string | undefined {
    return this.body.code;
  }
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const meta = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]');
  return meta?.content ?? "";
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

async function raw(path: string, options: RequestOptions = {}): Promise<Response> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  let body: BodyInit | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  if (!response.ok) {
    let errorBody: ApiErrorBody;
    try {
      errorBody = (await response.json()) as ApiErrorBody;
    } catch {
      errorBody = { detail: `${response.status} ${response.statusText}` };
    }
    throw new ApiError(response.status, errorBody);
  }
  return response;
}

async function json<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await raw(path, options);
  return (await response.json()) as T;
}

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
  me: () => json<Me>("/api/me/"),
  campaign: (id: number) => json<Campaign>(`/api/campaigns/${id}/`),
  scan: (id: number) => json<Scan>(`/api/scans/${id}/`),
  worklist: () => json<WorklistBatch[]>("/api/worklist/"),

  annotation: (campaignId: number, scanId: number) =>
    json<Annotation>(`${annotationPath(campaignId, scanId)}/annotation/`),

  /** The label volume of a revision (the head when omitted); null when none exists yet. */
  async labels(
    campaignId: number,
    scanId: number,
    revisionId?: number,
  ): Promise<LabelVolume | null> {
    const query = revisionId ? `?revision=${revisionId}` : "";
    let response: Response;
    try {
      response = await raw(`${annotationPath(campaignId, scanId)}/annotation/labels/${query}`, {
        // DRF negotiates even for this binary view: accept anything (JSON errors included).
        headers: { Accept: "application/octet-stream, */*;q=0.5" },
      });
    } catch (error) {
      // 404 {"code": "no_revision"}: no revision yet (any 404 here means no labels to show).
      if (error instanceof ApiError && error.status === 404) {
        return null;
      }
      throw error;
    }
    const shape = (response.headers.get("X-Label-Shape") ?? "").split(",").map(Number) as [
      number,
      number,
      number,
    ];
    return {
      compressed: new Uint8Array(await response.arrayBuffer()),
      shape,
      encoding: response.headers.get("X-Label-Encoding") ?? "zstd",
      revisionId: revisionIdFromEtag(response.headers.get("ETag")),
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
    const response = await raw(`${annotationPath(campaignId, scanId)}/annotation/revisions/`, {
      method: "POST",
      body: parentId === null ? { ...body, parent_id: null } : body,
      headers,
    });
    const payload = (await response.json()) as { revision?: RevisionHead } & RevisionHead;
    const revision = payload.revision ?? payload;
    const revisionId = revisionIdFromEtag(response.headers.get("ETag")) ?? revision.id;
    return { revision, revisionId };
  },

  submit: (campaignId: number, scanId: number, headId: number) =>
    json<unknown>(`${annotationPath(campaignId, scanId)}/annotation/submit/`, {
      method: "POST",
      body: {},
      headers: { "If-Match": etagFor(headId) },
    }),

  regionGrow: (campaignId: number, scanId: number, request: RegionGrowRequest) =>
    json<RegionGrowResult>(`${annotationPath(campaignId, scanId)}/region-grow/`, {
      method: "POST",
      body: request,
    }),
};
