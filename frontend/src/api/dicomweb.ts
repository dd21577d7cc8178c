// DICOMweb URLs and requests that need no Cornerstone (the worklist uses them too); every
// request goes through http.ts.
import { request, requestMultipart, type Part } from "./http";

export type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

export interface SeriesRef {
  origin: string;
  study: string;
  series: string;
}

export const seriesPath = ({ origin, study, series }: SeriesRef) =>
  `${origin}/dicomweb/studies/${study}/series/${series}`;

export const frameImageId = (ref: SeriesRef, sop: string) =>
  `wadors:${seriesPath(ref)}/instances/${sop}/frames/1`;

const SOP_INSTANCE_UID = "00080018";

export function sopOf(instance: DicomJson): string {
  return String(instance[SOP_INSTANCE_UID]?.Value?.[0] ?? "");
}

/** Fetch the series metadata (DICOM JSON, one object per instance, in volume order). */
export function fetchSeriesMetadata(
  ref: SeriesRef,
  priority?: "high" | "low" | "auto",
): Promise<DicomJson[]> {
  return request<DicomJson[]>(`${seriesPath(ref)}/metadata`, {
    accept: "application/dicom+json",
    priority,
  });
}

/** What the DICOMweb server is asked for frames: uncompressed or not, as stored. */
export const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

/** Frames `offset` to `offset + count - 1` (instances order) in one multipart answer. */
export function fetchPixelData(ref: SeriesRef, offset: number, count: number): Promise<Part[]> {
  return requestMultipart(`${seriesPath(ref)}/pixeldata`, {
    query: { offset, count },
    accept: FRAME_ACCEPT,
  });
}

/**
 * Ask for a scan's series metadata ahead of time (low priority), so that opening it later
 * finds it warm: in the server's cache and, for an hour, in the browser's HTTP cache.
 */
export async function warmScanMetadata(scanId: number): Promise<void> {
  try {
    const { study_uid: study, series_uid: series } = await request<{
      study_uid: string;
      series_uid: string;
    }>(`/api/scans/${scanId}/`);
    await fetchSeriesMetadata({ origin: window.location.origin, study, series }, "low");
  } catch {
    /* only a warm-up */
  }
}
