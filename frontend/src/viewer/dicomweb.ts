// Series metadata and pixel data over DICOMweb (platform_core/dicomweb.py).
//
// Speed: one request per frame took 6–9 s for 300 × 512² in headless Chromium here. The
// viewer therefore starts a few large `pixeldata` requests (many frames each, in volume
// order) as soon as the page opens; the `wadors` image loader is wrapped so that a frame
// already fetched is decoded from memory, and any other frame still goes over the network.
import { imageLoader } from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { createImage, wadors } from "@cornerstonejs/dicom-image-loader";

import { frameImageId, seriesPath, sopOf, type DicomJson, type SeriesRef } from "../api/dicomweb";

export { fetchSeriesMetadata, frameImageId, warmScanMetadata } from "../api/dicomweb";
export type { DicomJson, SeriesRef } from "../api/dicomweb";

/**
 * Register the metadata with the wadors loader; returns image ids by SOP. Only after
 * initCornerstone(): the loader files it into @cornerstonejs/metadata's typed store, which
 * its init sets up — registered earlier, half the loads failed ("pixelRepresentation of
 * undefined" when the volume was created).
 */
export function registerSeriesMetadata(
  ref: SeriesRef,
  instances: DicomJson[],
): Map<string, string> {
  const bySop = new Map<string, string>();
  for (const instance of instances) {
    const sop = sopOf(instance);
    const imageId = frameImageId(ref, sop);
    wadors.metaDataManager.add(imageId, instance as never);
    bySop.set(sop, imageId);
  }
  return bySop;
}

// --- Bulk prefetch ----------------------------------------------------------------------------

interface Frame {
  bytes: Uint8Array;
  transferSyntax: string;
}

const frames = new Map<string, Frame>();
const pending = new Map<
  string,
  { resolve: (f: Frame | null) => void; promise: Promise<Frame | null> }
>();
let prefetchDone: Promise<void> = Promise.resolve();

function waiter(imageId: string) {
  let entry = pending.get(imageId);
  if (!entry) {
    let resolve!: (f: Frame | null) => void;
    const promise = new Promise<Frame | null>((r) => (resolve = r));
    entry = { resolve, promise };
    pending.set(imageId, entry);
  }
  return entry;
}

function deliver(imageId: string, frame: Frame | null) {
  if (frame) frames.set(imageId, frame);
  waiter(imageId).resolve(frame);
}

const HEADER_END = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (
    let i = haystack.indexOf(first, from);
    i !== -1 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

interface Part {
  headers: Record<string, string>;
  body: Uint8Array;
}

/** Split a multipart/related body. Uses each part's Content-Length when present (fast path). */
export function parseMultipart(body: Uint8Array, contentType: string): Part[] {
  const boundary = contentType.match(/boundary="?([^";]+)"?/i)?.[1];
  if (!boundary) throw new Error("multipart response without boundary");
  const delimiter = new TextEncoder().encode(`--${boundary}`);
  const closing = new TextEncoder().encode(`\r\n--${boundary}`);
  const decoder = new TextDecoder();
  const parts: Part[] = [];
  let pos = indexOf(body, delimiter, 0);
  while (pos !== -1) {
    pos += delimiter.length;
    if (body[pos] === 45 && body[pos + 1] === 45) break; // "--": the closing delimiter
    const headerEnd = indexOf(body, HEADER_END, pos);
    if (headerEnd === -1) break;
    const headers: Record<string, string> = {};
    for (const line of decoder.decode(body.subarray(pos, headerEnd)).split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0)
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const start = headerEnd + 4;
    const length = Number(headers["content-length"]);
    const end =
      Number.isFinite(length) && length >= 0 ? start + length : indexOf(body, closing, start);
    if (end < 0) break;
    parts.push({ headers, body: body.subarray(start, end) });
    pos = indexOf(body, delimiter, end);
  }
  return parts;
}

function transferSyntaxOf(contentType: string): string {
  return contentType.match(/transfer-syntax=([0-9.]+)/)?.[1] ?? "1.2.840.10008.1.2.1";
}

async function fetchChunk(ref: SeriesRef, offset: number, count: number, imageIds: string[]) {
  try {
    const response = await fetch(`${seriesPath(ref)}/pixeldata?offset=${offset}&count=${count}`, {
      headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`pixeldata: HTTP ${response.status}`);
    const body = new Uint8Array(await response.arrayBuffer());
    for (const part of parseMultipart(body, response.headers.get("Content-Type") ?? "")) {
      const location = part.headers["content-location"];
      if (!location) continue;
      // Own buffer per frame: the decoder transfers (detaches) it to its web worker.
      deliver(`wadors:${location}`, {
        bytes: part.body.slice(),
        transferSyntax: transferSyntaxOf(part.headers["content-type"] ?? ""),
      });
    }
  } catch (error) {
    console.warn("bulk frame prefetch failed; frames fall back to one request each", error);
  } finally {
    // Anything this chunk should have had and did not: let the loader fetch it itself.
    for (const id of imageIds) if (!frames.has(id)) deliver(id, null);
  }
}

/**
 * Start fetching all frames in `parallel` streams of `chunk` instances each, in volume order.
 * `imageIdsInServerOrder[i]` is the image id of instance index i.
 */
export function prefetchSeries(
  ref: SeriesRef,
  imageIdsInServerOrder: string[],
  { chunk = 32, parallel = 4 } = {},
): Promise<void> {
  const total = imageIdsInServerOrder.length;
  // The viewer opens at the middle slice: a few frames around it first, alone in their
  // request so that they arrive at once, then the rest outward from the middle.
  const first = Math.min(total, 4);
  const firstStart = Math.max(0, Math.floor(total / 2) - first / 2);
  const jobs: [number, number][] = [[firstStart, first]];
  const add = (from: number, to: number) => {
    for (let offset = from; offset < to; offset += chunk)
      jobs.push([offset, Math.min(chunk, to - offset)]);
  };
  add(firstStart + first, total);
  add(0, firstStart);
  const middle = total / 2;
  const distance = ([offset, count]: [number, number]) => Math.abs(offset + count / 2 - middle);
  jobs.splice(1, jobs.length, ...jobs.slice(1).sort((a, b) => distance(a) - distance(b)));
  imageIdsInServerOrder.forEach((id) => waiter(id));
  const next = async (): Promise<void> => {
    const job = jobs.shift();
    if (!job) return;
    const [offset, count] = job;
    await fetchChunk(ref, offset, count, imageIdsInServerOrder.slice(offset, offset + count));
    return next();
  };
  prefetchDone = Promise.all(Array.from({ length: parallel }, next)).then(() => undefined);
  return prefetchDone;
}

type LoaderOptions = Record<string, unknown>;

/** Replace the `wadors` loader: frames from the bulk prefetch first, the network otherwise. */
export function registerPrefetchingLoader(): void {
  const networkLoader = wadors.loadImage;
  const loader = (imageId: string, options: LoaderOptions = {}): Types.IImageLoadObject => {
    const entry = pending.get(imageId);
    if (!entry) return networkLoader(imageId, options as never) as Types.IImageLoadObject;
    const promise = entry.promise.then((frame) => {
      if (!frame) return networkLoader(imageId, options as never).promise;
      frames.delete(imageId);
      pending.delete(imageId);
      return createImage(imageId, frame.bytes, frame.transferSyntax, options as never).then(
        (image) => image as unknown as Types.IImage,
      );
    });
    return { promise: promise as Promise<Types.IImage>, cancelFn: undefined };
  };
  imageLoader.registerImageLoader("wadors", loader as never);
}

export function clearPrefetch(): void {
  frames.clear();
  pending.clear();
}
