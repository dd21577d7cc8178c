// DICOMweb URLs and requests that need no Cornerstone (the worklist uses them too).

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
export async function fetchSeriesMetadata(
  ref: SeriesRef,
  init: RequestInit = {},
): Promise<DicomJson[]> {
  const response = await fetch(`${seriesPath(ref)}/metadata`, {
    headers: { Accept: "application/dicom+json" },
    credentials: "same-origin",
    ...init,
  });
  if (!response.ok) throw new Error(`series metadata: HTTP ${response.status}`);
  return (await response.json()) as DicomJson[];
}

/**
 * Ask for a scan's series metadata ahead of time (low priority), so that opening it later
 * finds it warm: in the server's cache and, for an hour, in the browser's HTTP cache.
 */
export async function warmScanMetadata(scanId: number): Promise<void> {
  try {
    const scan = await fetch(`/api/scans/${scanId}/`, { credentials: "same-origin" });
    if (!scan.ok) return;
    const { study_uid: study, series_uid: series } = (await scan.json()) as {
      study_uid: string;
      series_uid: string;
    };
    const ref = { origin: window.location.origin, study, series };
    await fetchSeriesMetadata(ref, { priority: "low" } as RequestInit);
  } catch {
    /* only a warm-up */
  }
}
