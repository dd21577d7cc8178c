// JSON requests and uploads for the QC and management pages, on top of client.ts's error type
// and CSRF token (client.ts keeps its own request function private to the viewer's API).
import { ApiError, csrfToken } from "./client";
import type { ApiErrorBody } from "./types";

export { ApiError };

export interface RequestOptions {
  method?: "GET" | "POST";
  body?: unknown;
  query?: Record<string, string | number | null | undefined>;
}

export function withQuery(path: string, query: RequestOptions["query"] = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function errorBody(response: Response): Promise<ApiErrorBody> {
  try {
    return (await response.json()) as ApiErrorBody;
  } catch {
    return { detail: `the server answered ${response.status} ${response.statusText}` };
  }
}

/** One API call; a non-2xx answer throws ApiError carrying the API's `detail`. */
export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  let body: string | undefined;
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body ?? {});
  }
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method,
      headers,
      body,
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, { detail: "the server cannot be reached; check your connection" });
  }
  if (!response.ok) throw new ApiError(response.status, await errorBody(response));
  return (await response.json()) as T;
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
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.body.detail) return String(error.body.detail);
    const fields = fieldErrors(error.body);
    if (fields) return fields;
    if (error.status === 404) return "not found, or not yours to see";
    if (error.status === 403) return "you may not do this";
    return `the request failed (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

export interface Upload<T> {
  done: Promise<T>;
  abort: () => void;
}

/** POST multipart form data with upload progress (fetch cannot report it; XMLHttpRequest can). */
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
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { detail: `the server answered ${xhr.status} ${xhr.statusText}` };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as T);
      else reject(new ApiError(xhr.status, body as ApiErrorBody));
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
