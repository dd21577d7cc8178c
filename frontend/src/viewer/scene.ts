// The rendering engine, the CT volume, its viewports and the labelmap segmentation.
//
// Index spaces: the server's label volume is (z, y, x) with z in the scan's `instances`
// order; Cornerstone's volume is (i, j, k) = (x, y, k) with k in `volume.imageIds` order
// (sorted by Cornerstone along the slice normal). They are matched by SOP instance, never
// by assuming the two orders agree (kToZ / zToK).
import {
  cache,
  Enums as CoreEnums,
  eventTarget,
  RenderingEngine,
  setVolumesForViewports,
  utilities as csUtils,
  volumeLoader,
} from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { Enums as ToolEnums, segmentation } from "@cornerstonejs/tools";

import type { LabelClass } from "../api/types";

export type ViewName = "axial" | "coronal" | "sagittal";

const ORIENTATION: Record<ViewName, CoreEnums.OrientationAxis> = {
  axial: CoreEnums.OrientationAxis.AXIAL,
  coronal: CoreEnums.OrientationAxis.CORONAL,
  sagittal: CoreEnums.OrientationAxis.SAGITTAL,
};

export interface WindowPreset {
  name: string;
  center: number;
  width: number;
}

export const WINDOW_PRESETS: WindowPreset[] = [
  { name: "Lung", center: -500, width: 1500 },
  { name: "Mediastinum", center: 40, width: 400 },
  { name: "Bone", center: 400, width: 1800 },
];

export function hexToRgba(hex: string, alpha = 255): Types.Color {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, alpha];
}

export class Scene {
  readonly engine: RenderingEngine;
  readonly volumeId: string;
  readonly labelmapId: string;
  readonly segmentationId: string;
  readonly toolGroupId: string;
  volume!: Types.IImageVolume;
  labelmap!: Types.IImageVolume;
  /** Cornerstone slice k → server slice z, and back. */
  kToZ = new Int32Array(0);
  zToK = new Int32Array(0);
  private enabled = new Set<ViewName>();
  private voi: WindowPreset = WINDOW_PRESETS[0];

  constructor(
    readonly scanId: number,
    private readonly elements: Record<ViewName, HTMLDivElement>,
  ) {
    this.engine = new RenderingEngine(`curatect-engine-${scanId}`);
    this.volumeId = `cornerstoneStreamingImageVolume:curatect-ct-${scanId}`;
    this.labelmapId = `curatect-labelmap-${scanId}`;
    this.segmentationId = `curatect-seg-${scanId}`;
    this.toolGroupId = `curatect-tools-${scanId}`;
    // The right button zooms; the browser's menu would cover the image. (Here, not as an
    // inline oncontextmenu handler: the Content-Security-Policy runs no inline code.)
    for (const element of Object.values(elements)) {
      element.addEventListener("contextmenu", (event) => event.preventDefault());
    }
  }

  get dims(): Types.Point3 {
    return this.volume.dimensions;
  }

  viewportId(view: ViewName): string {
    return `curatect-${view}`;
  }

  viewport(view: ViewName = "axial"): Types.IVolumeViewport {
    return this.engine.getViewport(this.viewportId(view)) as Types.IVolumeViewport;
  }

  enabledViews(): ViewName[] {
    return [...this.enabled];
  }

  /** Create the CT volume (streaming) from image ids given in server order. */
  async createVolume(imageIdsInServerOrder: string[]): Promise<void> {
    this.volume = (await volumeLoader.createAndCacheVolume(this.volumeId, {
      imageIds: imageIdsInServerOrder,
    })) as Types.IImageVolume;
    const zOf = new Map(imageIdsInServerOrder.map((id, z) => [id, z]));
    const n = this.volume.imageIds.length;
    this.kToZ = new Int32Array(n);
    this.zToK = new Int32Array(n);
    this.volume.imageIds.forEach((id, k) => {
      const z = zOf.get(id);
      if (z === undefined) throw new Error(`image ${id} is not one of the scan's instances`);
      this.kToZ[k] = z;
      this.zToK[z] = k;
    });
  }

  /**
   * Stream the volume's frames; resolves when every frame is in.
   *
   * Rendering policy: with software WebGL (SwiftShader, headless) one render of a large
   * viewport costs 0.2–0.8 s, and Cornerstone re-renders at every 2 % of frames; that alone
   * made a 300-slice scan take 10–20 s. So: one render as soon as the slice on screen has
   * arrived (the first image), then none until the volume is complete (texture uploads
   * happen at render time, all in one go), unless the user scrolls meanwhile. The caller
   * renders when the promise resolves.
   */
  load(onProgress?: (done: number, total: number) => void): Promise<void> {
    const streaming = this.volume as unknown as {
      load(callback: () => void): void;
      autoRenderOnLoad: boolean;
      cachedFrames: unknown[];
    };
    streaming.autoRenderOnLoad = false;
    let shown = false;
    return new Promise((resolve) => {
      const handler = (evt: Event) => {
        const detail = (evt as CustomEvent).detail as { volumeId: string; framesProcessed: number };
        if (detail.volumeId !== this.volumeId) return;
        onProgress?.(detail.framesProcessed, this.volume.imageIds.length);
        if (!shown && streaming.cachedFrames[this.currentK()]) {
          shown = true;
          this.renderAll();
        }
      };
      eventTarget.addEventListener(CoreEnums.Events.IMAGE_VOLUME_MODIFIED, handler);
      // Complete: the caller renders (with whatever else it sets up, in the same render).
      streaming.load(() => {
        eventTarget.removeEventListener(CoreEnums.Events.IMAGE_VOLUME_MODIFIED, handler);
        resolve();
      });
    });
  }

  /** Cornerstone slice index k shown in the axial view. */
  currentK(): number {
    const viewport = this.viewport("axial");
    const imageId = viewport.getCurrentImageId?.();
    const k = imageId ? this.volume.imageIds.indexOf(imageId) : -1;
    return k >= 0
      ? k
      : Math.max(0, Math.min(this.kToZ.length - 1, viewport.getCurrentImageIdIndex()));
  }

  /** Show a view; `render: false` while loading (see load()). */
  async enableView(view: ViewName, render = true): Promise<void> {
    if (this.enabled.has(view)) return;
    const element = this.elements[view];
    element.hidden = false;
    this.engine.enableElement({
      viewportId: this.viewportId(view),
      type: CoreEnums.ViewportType.ORTHOGRAPHIC,
      element,
      defaultOptions: { orientation: ORIENTATION[view], background: [0, 0, 0] as Types.Point3 },
    });
    this.enabled.add(view);
    await setVolumesForViewports(
      this.engine,
      [{ volumeId: this.volumeId }],
      [this.viewportId(view)],
      render,
    );
    this.applyVoi(view, render);
    if (this.labelmapShown) await this.addLabelmapRepresentation(view);
  }

  disableView(view: ViewName): void {
    if (!this.enabled.has(view)) return;
    this.engine.disableElement(this.viewportId(view));
    this.enabled.delete(view);
    this.elements[view].hidden = true;
  }

  /** Fit the viewports to their elements; `render: false` while loading (see load()). */
  resize(render = true): void {
    this.engine.resize(render, true);
  }

  setWindow(preset: WindowPreset): void {
    this.voi = preset;
    for (const view of this.enabled) this.applyVoi(view);
  }

  private applyVoi(view: ViewName, render = true): void {
    const { center, width } = this.voi;
    const viewport = this.viewport(view);
    viewport.setProperties({ voiRange: { lower: center - width / 2, upper: center + width / 2 } });
    if (render) viewport.render();
  }

  currentWindow(view: ViewName = "axial"): { center: number; width: number } {
    const range = this.viewport(view).getProperties()?.voiRange;
    if (!range) return { center: this.voi.center, width: this.voi.width };
    return { center: (range.lower + range.upper) / 2, width: range.upper - range.lower };
  }

  // --- Labelmap --------------------------------------------------------------------------

  createLabelmap(classes: LabelClass[]): void {
    this.labelmap = volumeLoader.createAndCacheDerivedLabelmapVolume(this.volumeId, {
      volumeId: this.labelmapId,
    });
    segmentation.addSegmentations([
      {
        segmentationId: this.segmentationId,
        representation: {
          type: ToolEnums.SegmentationRepresentations.Labelmap,
          data: { volumeId: this.labelmapId },
        },
        config: {
          segments: Object.fromEntries(
            classes.map((c, i) => [c.value, { label: c.name, active: i === 0 }]),
          ),
        },
      },
    ]);
    this.colorLut = this.buildColorLut(classes);
  }

  private colorLut: Types.ColorLUT = [];

  private buildColorLut(classes: LabelClass[]): Types.ColorLUT {
    const lut: Types.Color[] = Array.from({ length: 256 }, () => [0, 0, 0, 0] as Types.Color);
    for (const c of classes) lut[c.value] = hexToRgba(c.color);
    return lut as Types.ColorLUT;
  }

  private labelmapShown = false;

  /** Show the labelmap in every enabled view. */
  async showLabelmap(): Promise<void> {
    this.labelmapShown = true;
    for (const view of this.enabled) await this.addLabelmapRepresentation(view);
  }

  async addLabelmapRepresentation(view: ViewName): Promise<void> {
    await segmentation.addLabelmapRepresentationToViewport(this.viewportId(view), [
      { segmentationId: this.segmentationId, config: { colorLUTOrIndex: this.colorLut } },
    ]);
  }

  /** The labelmap slice k (Cornerstone order) as a writable (rows × columns) array. */
  labelSlice(k: number): Uint8Array {
    const image = cache.getImage(this.labelmap.imageIds[k]);
    if (!image?.voxelManager) throw new Error(`labelmap slice ${k} is missing`);
    return image.voxelManager.getScalarData() as Uint8Array;
  }

  /** Tell Cornerstone which slices (k) changed, so it re-uploads and renders them. */
  labelsChanged(slicesK?: number[]): void {
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(
      this.segmentationId,
      slicesK && slicesK.length ? slicesK : undefined,
    );
  }

  setActiveClass(value: number): void {
    segmentation.segmentIndex.setActiveSegmentIndex(this.segmentationId, value);
  }

  setLabelmapVisible(visible: boolean): void {
    for (const view of this.enabled) {
      segmentation.config.visibility.setSegmentationRepresentationVisibility(
        this.viewportId(view),
        {
          segmentationId: this.segmentationId,
          type: ToolEnums.SegmentationRepresentations.Labelmap,
        },
        visible,
      );
    }
  }

  setLabelmapOpacity(alpha: number, render = true): void {
    segmentation.config.style.setStyle(
      { type: ToolEnums.SegmentationRepresentations.Labelmap },
      { fillAlpha: alpha, fillAlphaInactive: alpha, outlineOpacity: Math.min(1, alpha + 0.3) },
    );
    if (render) this.renderAll();
  }

  renderAll(): void {
    this.engine.render();
  }

  /**
   * Resolve once the axial view has drawn with its labelmap (or after `timeoutMs`). Call it
   * before showLabelmap(), whose render is the one awaited.
   */
  labelledRender(timeoutMs = 15000): Promise<void> {
    const viewportId = this.viewportId("axial");
    return new Promise((resolve) => {
      const done = (evt?: Event) => {
        const detail = (evt as CustomEvent | undefined)?.detail as
          { viewportId?: string } | undefined;
        if (evt && detail?.viewportId !== viewportId) return;
        eventTarget.removeEventListener(ToolEnums.Events.SEGMENTATION_RENDERED, done);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_RENDERED, done);
    });
  }

  // --- Geometry -------------------------------------------------------------------------

  /** World point → voxel (i, j, k), or null outside the volume. */
  worldToIJK(world: Types.Point3): [number, number, number] | null {
    const ijk = csUtils.transformWorldToIndex(this.volume.imageData!, world);
    const [i, j, k] = ijk.map(Math.round);
    const [w, h, d] = this.dims;
    if (i < 0 || j < 0 || k < 0 || i >= w || j >= h || k >= d) return null;
    return [i, j, k];
  }

  huAt(i: number, j: number, k: number): number {
    return Number(this.volume.voxelManager!.getAtIJK(i, j, k));
  }

  /** Move the axial view to server slice z. */
  jumpToZ(z: number, view: ViewName = "axial", render = true): void {
    const k = this.zToK[z];
    const viewport = this.viewport(view);
    if (!render) {
      // setViewReference renders; while loading, move the camera along the normal instead.
      const camera = viewport.getCamera();
      const normal = camera.viewPlaneNormal!;
      const focal = camera.focalPoint!;
      const position = camera.position!;
      const target = csUtils.transformIndexToWorld(this.volume.imageData!, [0, 0, k]);
      const d =
        (target[0] - focal[0]) * normal[0] +
        (target[1] - focal[1]) * normal[1] +
        (target[2] - focal[2]) * normal[2];
      const shift = (p: Types.Point3): Types.Point3 => [
        p[0] + d * normal[0],
        p[1] + d * normal[1],
        p[2] + d * normal[2],
      ];
      viewport.setCamera({ focalPoint: shift(focal), position: shift(position) });
      return;
    }
    viewport.setViewReference({
      FrameOfReferenceUID: viewport.getFrameOfReferenceUID(),
      referencedImageId: this.volume.imageIds[k],
      volumeId: this.volumeId,
    } as Types.ViewReference);
    viewport.render();
  }

  /** The server slice z shown in the axial view. */
  currentZ(): number {
    return this.kToZ[this.currentK()];
  }

  /** Canvas position (CSS pixels) of voxel (z, y, x) in the axial view; jumps there first. */
  canvasPointOf(z: number, y: number, x: number): [number, number] {
    this.jumpToZ(z);
    return this.canvasOf(z, y, x);
  }

  /** Canvas position (CSS pixels) of voxel (z, y, x) in the axial view, without moving it. */
  canvasOf(z: number, y: number, x: number): [number, number] {
    const world = csUtils.transformIndexToWorld(this.volume.imageData!, [x, y, this.zToK[z]]);
    const [cx, cy] = this.viewport("axial").worldToCanvas(world);
    return [cx, cy];
  }

  destroy(): void {
    try {
      segmentation.removeAllSegmentationRepresentations();
      segmentation.removeAllSegmentations();
    } catch {
      /* already gone */
    }
    this.engine.destroy();
    cache.removeVolumeLoadObject(this.labelmapId);
    cache.removeVolumeLoadObject(this.volumeId);
  }
}
