// Series metadata and pixel data over DICOMweb (platform_core/dicomweb.py).
//
// Speed: one request per frame took 6–9 s for 300 × 512² in headless Chromium here. The
// viewer therefore starts a few large `pixeldata` requests (many frames each, in volume
// order) as soon as the page opens; the `wadors` image loader is wrapped so that a frame
// already fetched is decoded from memory, and any other frame is fetched on its own.
import { imageLoader } from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { createImage, wadors } from "@cornerstonejs/dicom-image-loader";

import {
  FRAME_ACCEPT,
  fetchPixelData,
  frameImageId,
  sopOf,
  type DicomJson,
  type SeriesRef,
} from "../api/dicomweb";
import { requestMultipart } from "../api/http";

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

function transferSyntaxOf(contentType: string): string {
  return contentType.match(/transfer-syntax=([0-9.]+)/)?.[1] ?? "1.2.840.10008.1.2.1";
}

async function fetchChunk(ref: SeriesRef, offset: number, count: number, imageIds: string[]) {
  try {
    for (const part of await fetchPixelData(ref, offset, count)) {
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

/** One frame over WADO-RS (image id `wadors:<frame URL>`), through the app's HTTP wrapper. */
async function fetchFrame(imageId: string): Promise<Frame> {
  const [part] = await requestMultipart(imageId.slice("wadors:".length), {
    accept: FRAME_ACCEPT,
  });
  if (!part) throw new Error(`the server sent no pixel data for ${imageId}`);
  return {
    bytes: part.body.slice(),
    transferSyntax: transferSyntaxOf(part.headers["content-type"] ?? ""),
  };
}

/**
 * Replace the `wadors` loader: frames from the bulk prefetch first, else one WADO-RS request
 * per frame (through http.ts, like every other request, rather than the loader's own XHR).
 */
export function registerPrefetchingLoader(): void {
  const loader = (imageId: string, options: LoaderOptions = {}): Types.IImageLoadObject => {
    const entry = pending.get(imageId);
    const frame = entry
      ? entry.promise.then((prefetched) => prefetched ?? fetchFrame(imageId))
      : fetchFrame(imageId);
    const promise = frame.then((f) => {
      frames.delete(imageId);
      pending.delete(imageId);
      return createImage(imageId, f.bytes, f.transferSyntax, options as never).then(
        (image) => image as unknown as Types.IImage,
      );
    });
    return { promise, cancelFn: undefined };
  };
  imageLoader.registerImageLoader("wadors", loader as never);
}

export function clearPrefetch(): void {
  frames.clear();
  pending.clear();
}
