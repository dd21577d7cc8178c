// The one HTTP wrapper of the frontend: every request of every page goes through send() (or
// upload(), for progress). Session auth: same-origin cookies, and the CSRF token on every unsafe
// method. A non-2xx answer, or no answer at all, throws one error type, ApiError, whose message
// is the server's reason (`detail`, else its field errors) in words a person can act on.
import { parseMultipart, type Part } from "./multipart";
import type { ApiErrorBody } from "./types";

export type { Part } from "./multipart";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
  ) {
    super(reasonOf(status, body));
  }

  get code(): string | undefined {
    return this.body.code;
  }
}

/** DRF field errors ({"size": ["…"]}) as one sentence, for bodies without `detail`. */
function fieldErrors(body: ApiErrorBody): string {
  return Object.entries(body)
    .filter(([key]) => key !== "code" && key !== "detail")
    .map(([key, value]) => {
      const text = Array.isArray(value) ? value.join(" ") : JSON.stringify(value);
      return key === "non_field_errors" ? text : `${key}: ${text}`;
    })
    .join("; ");
}

/** What to tell a person: the API's reason (`detail`), else its field errors, else the status. */
function reasonOf(status: number, body: ApiErrorBody): string {
  if (body.detail) return String(body.detail);
  const fields = fieldErrors(body);
  if (fields) return fields;
  if (status === 404) return "not found, or not yours to see";
  if (status === 403) return "you may not do this";
  return `the request failed (HTTP ${status})`;
}

/** The message to show for any error a request (or the code around it) threw. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const meta = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]');
  return meta?.content ?? "";
}

export type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
export type Query = Record<string, string | number | null | undefined>;

export interface RequestOptions {
  method?: Method;
  /** Sent as JSON (unsafe methods only; `{}` when omitted). */
  body?: unknown;
  query?: Query;
  /** The Accept header; JSON unless said otherwise. */
  accept?: string;
  headers?: Record<string, string>;
  /** fetch's priority hint ("low" for warm-ups). */
  priority?: "high" | "low" | "auto";
}

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  if (!text) return path;
  return `${path}${path.includes("?") ? "&" : "?"}${text}`;
}

const isSafe = (method: Method) => method === "GET" || method === "HEAD";

/** The error body of a failed answer; a body that is not JSON (an HTML error page) says the status. */
function parseErrorBody(text: string, status: number, statusText: string): ApiErrorBody {
  try {
    const body: unknown = JSON.parse(text);
    if (body && typeof body === "object" && !Array.isArray(body)) return body as ApiErrorBody;
    if (Array.isArray(body)) return { detail: body.map(String).join(" ") };
  } catch {
    /* not JSON */
  }
  return { detail: `the server answered ${status} ${statusText}`.trim() };
}

/** One request; resolves with the 2xx response, throws ApiError otherwise. */
export async function send(path: string, options: RequestOptions = {}): Promise<Response> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = {
    Accept: options.accept ?? "application/json",
    ...options.headers,
  };
  let body: string | undefined;
  if (!isSafe(method)) {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body ?? {});
  }
  const init: RequestInit & { priority?: string } = {
    method,
    headers,
    body,
    credentials: "same-origin",
  };
  if (options.priority) init.priority = options.priority;
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), init);
  } catch {
    throw new ApiError(0, { detail: "the server cannot be reached; check your connection" });
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      parseErrorBody(await response.text(), response.status, response.statusText),
    );
  }
  return response;
}

/** The JSON body of a 2xx response (undefined for an empty one, e.g. 204). */
export async function readJson<T>(response: Response): Promise<T> {
  const text = await response.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(response.status, {
      detail: "the server's answer could not be read (not JSON); reload the page",
    });
  }
}

/** A JSON API call. */
export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  return readJson<T>(await send(path, options));
}

/** A binary answer (label volumes): its bytes and headers. */
export async function requestBytes(
  path: string,
  options: RequestOptions = {},
): Promise<{ bytes: Uint8Array; headers: Headers }> {
  const response = await send(path, { accept: "application/octet-stream", ...options });
  return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
}

/** A multipart/related answer (DICOMweb frames): its parts. */
export async function requestMultipart(
  path: string,
  options: RequestOptions = {},
): Promise<Part[]> {
  const response = await send(path, { accept: "multipart/related", ...options });
  const body = new Uint8Array(await response.arrayBuffer());
  return parseMultipart(body, response.headers.get("Content-Type") ?? "");
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

export interface Upload<T> {
  done: Promise<T>;
  abort: () => void;
}

/**
 * POST multipart form data with upload progress (fetch cannot report it; XMLHttpRequest can).
 * Same CSRF token and the same errors as send().
 */
export function upload<T>(
  path: string,
  form: FormData,
  onProgress: (progress: UploadProgress) => void,
): Upload<T> {
  const xhr = new XMLHttpRequest();
  const done = new Promise<T>((resolve, reject) => {
    xhr.open("POST", path);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (evt) => {
      if (evt.lengthComputable) onProgress({ loaded: evt.loaded, total: evt.total });
    });
    xhr.addEventListener("load", () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(
          new ApiError(xhr.status, parseErrorBody(xhr.responseText, xhr.status, xhr.statusText)),
        );
        return;
      }
      try {
        resolve((xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as T);
      } catch {
        reject(new ApiError(xhr.status, { detail: "the server's answer could not be read" }));
      }
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, { detail: "the upload failed: the server cannot be reached" })),
    );
    xhr.addEventListener("abort", () =>
      reject(new ApiError(0, { detail: "the upload was cancelled", code: "aborted" })),
    );
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}
