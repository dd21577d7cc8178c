// The viewer: one scan in Cornerstone3D, its views, tools and panels, in one of two modes
// (annotate, review). start() follows Cornerstone3D's set-up order: init core, tools and image
// loader (registering the tools) → tool group with its bindings → volume and viewports → load
// the volume → add the segmentation → render. destroy() undoes all of it: listeners, the tool
// group, the rendering engine and the cached volumes.
import { Enums as CoreEnums } from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import { api } from "../api/client";
import { zstd } from "../api/encoding";
import { ApiError, errorMessage } from "../api/http";
import { showBatchNav, type BatchPlace } from "../panels/batchNav";
import { ClassPicker } from "../panels/classPicker";
import { $ } from "../panels/dom";
import { FindingMarkers } from "../panels/review";
import { ScanLabelsPanel } from "../panels/scanLabels";
import { sliceNumber, sliceZ, type SliceGeometry } from "../panels/slices";
import { ViewerTools, type ToolMode } from "../tools/toolGroup";
import { initCornerstone } from "./cornerstone";
import { ViewControls } from "./controls";
import { installDebugHook, mark, type DebugHook } from "./debugHook";
import {
  clearPrefetch,
  fetchSeriesMetadata,
  frameImageId,
  prefetchSeries,
  registerSeriesMetadata,
  warmScanMetadata,
  type SeriesRef,
} from "./dicomweb";
import { LabelState } from "./labels";
import { AnnotateMode } from "./modes/annotate";
import type { ViewerMode } from "./modes/mode";
import { ReviewMode, reviewTargetOf } from "./modes/review";
import { Scene } from "./scene";
import { AnnotationSession } from "./session";

export type SaveKind = "" | "ok" | "warn" | "error";

/** A load that makes no progress for this long says so, instead of spinning for ever. */
const STALL_MS = 60000;

export interface ViewerConfig {
  campaignId: number;
  scanId: number;
  ref: SeriesRef;
  /** The page's query: ?check= / ?spot_check= (review mode), ?slice=, and loader knobs. */
  params: URLSearchParams;
}

export class Viewer {
  readonly campaignId: number;
  readonly scanId: number;
  readonly hook: DebugHook;
  readonly mode: ViewerMode;
  // Set up by start(), in this order; absent before (the test hook asks early).
  scene?: Scene;
  tools?: ViewerTools;
  labels?: LabelState;
  session?: AnnotationSession;
  scanLabels?: ScanLabelsPanel;
  classPicker?: ClassPicker;
  markers?: FindingMarkers;
  /** The scan's slice count and directions: what slice numbers (1 = top) are counted from. */
  geometry: SliceGeometry = { slices: 0 };
  /** Everything the scene shows is in and drawn; edits count from here. */
  ready = false;
  /** A reload the person asked for: no "unsaved changes" prompt. */
  leaving = false;
  readonly controls = new ViewControls(this);
  private lastHu = "";
  private stallTimer: number | undefined;
  private readonly cleanups: (() => void)[] = [];
  private destroyed = false;

  constructor(
    readonly root: HTMLElement,
    readonly config: ViewerConfig,
  ) {
    this.campaignId = config.campaignId;
    this.scanId = config.scanId;
    this.hook = installDebugHook({
      labelVoxelCount: () => this.labels?.voxelCount() ?? 0,
      classCounts: () => this.labels?.classCounts() ?? {},
      currentZ: () => this.scene?.currentZ() ?? -1,
      headRevisionId: () => this.session?.headId ?? null,
      annotationState: () => this.session?.state ?? "",
      dirty: () => this.dirty(),
      tool: () => this.tools?.mode ?? "windowLevel",
      canvasPointOf: (z, y, x) => this.scene!.canvasPointOf(z, y, x),
    });
    // Every independent request at once, from here: the frames stream in while Cornerstone starts.
    const target = reviewTargetOf(config.params, this.campaignId, this.scanId);
    this.mode = target ? new ReviewMode(this, target) : new AnnotateMode(this);
    this.mode.labels.catch(() => undefined); // awaited in start(); no unhandled rejection meanwhile
    this.hook.reviewing = this.mode.kind === "review";
    this.hook.findings = () => this.mode.findings();
    this.hook.markers = () => this.markers?.visible() ?? [];
  }

  /** Labels or scan labels changed since the last save (only where this person may save). */
  dirty(): boolean {
    const { session, scanLabels } = this;
    return !!session && !!scanLabels && session.editable && session.isDirty(scanLabels.values);
  }

  /** addEventListener, undone by destroy(). */
  listen(
    target: EventTarget,
    type: string,
    handler: (evt: never) => void,
    options?: AddEventListenerOptions,
  ): void {
    const listener = handler as unknown as EventListener;
    target.addEventListener(type, listener, options);
    this.cleanups.push(() => target.removeEventListener(type, listener, options));
  }

  /** Run `cleanup` at destroy() (a detach function, an observer's disconnect). */
  onDestroy(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  async start(): Promise<void> {
    const { params } = this.config;
    const ref = this.config.ref;
    const scanP = api.scan(this.scanId);
    const campaignP = api.campaign(this.campaignId);
    const metadataP = fetchSeriesMetadata(ref);
    const scan = await scanP;
    this.geometry = { slices: scan.slices, direction: scan.direction };
    mark(this.hook, "scan");
    const imageIds = scan.instances.map((sop) => frameImageId(ref, sop));
    // ?prefetch=0 (one request per frame), ?chunk=, ?parallel=: for measuring the loader.
    if (params.get("prefetch") !== "0") {
      const options = {
        chunk: Number(params.get("chunk") ?? 32),
        parallel: Number(params.get("parallel") ?? 4),
      };
      void prefetchSeries(ref, imageIds, options).then(
        () => (this.hook.bulkFramesMs = performance.now()),
      );
    }

    // 1. Core, tools and image loader; the tools are registered there.
    await initCornerstone();
    registerSeriesMetadata(ref, await metadataP);
    mark(this.hook, "metadata");
    // 2. The rendering engine and the tool group with its bindings.
    const scene = new Scene(this.scanId, {
      axial: $("#view-axial"),
      coronal: $("#view-coronal"),
      sagittal: $("#view-sagittal"),
    });
    this.scene = scene;
    this.tools = new ViewerTools(scene.toolGroupId);
    // 3. The volume and the axial viewport (no render while loading: see Scene.load).
    await scene.createVolume(imageIds);
    await scene.enableView("axial", false);
    mark(this.hook, "viewport");
    this.listen($("#view-axial"), CoreEnums.Events.IMAGE_RENDERED, () => {
      this.hook.firstImageMs ??= performance.now();
      this.hook.renders++;
    });
    // Open at the middle of the scan, where the lungs are (and where the prefetch starts).
    scene.jumpToZ(Math.floor(scan.slices / 2), "axial", false);
    // 4. Load the volume.
    const loaded = this.loadVolume(scene);

    // 5. The segmentation, the label state and the annotation session.
    const [campaign, annotation] = await Promise.all([campaignP, this.mode.annotation]);
    scene.createLabelmap(campaign.label_schema.classes);
    this.labels = new LabelState(scene);
    this.session = new AnnotationSession(this.campaignId, this.scanId, annotation, this.labels);
    this.classPicker = new ClassPicker($("#class-picker"), campaign.label_schema.classes, (v) =>
      scene.setActiveClass(v),
    );
    this.scanLabels = new ScanLabelsPanel(
      $("#scan-labels"),
      campaign.label_schema.scan_labels ?? [],
      () => this.mode.refresh(),
    );
    this.controls.wire();
    this.wireViewport();
    this.mode.wire();
    scene.setActiveClass(this.classPicker.current);
    this.controls.brushSize();
    this.controls.tolerance();
    this.controls.growRadius();
    this.markers = new FindingMarkers(scene, $("#view-axial"));
    if (this.mode.kind === "review") this.root.classList.add("reviewing");
    const placeP = this.mode.place();
    void placeP.then(({ next }) => {
      // Once this scan is on screen, get the next one's metadata ready.
      if (next !== null) loaded.then(() => warmScanMetadata(next)).catch(() => undefined);
    });

    const labelVolume = await this.mode.labels;
    mark(this.hook, "labels");
    if (labelVolume) this.labels.loadVolume(zstd(labelVolume.compressed), labelVolume.shape);
    // Open on the first (most cranial) slice that holds labels; the middle stays when none does.
    const firstLabelled = this.labelledNumbers()[0];
    if (firstLabelled !== undefined) {
      scene.jumpToZ(sliceZ(firstLabelled, this.geometry), "axial", false);
    }
    const values = await this.mode.scanLabelValues(annotation, labelVolume);
    if (values) this.scanLabels.values = values;
    const { inMyBatch } = await placeP;
    if (!inMyBatch) this.session.state = "viewing";

    await loaded;
    mark(this.hook, "frames");
    // Choosing a tool re-renders the tool group's viewports: chosen before the viewport joins.
    await this.mode.showStartingPoint(annotation);
    this.tools.addViewport(scene.viewportId("axial"), scene.engine.id);
    // 6. One render for what is left: the CT texture and the labelmap, added only now (earlier,
    // each change to it re-rendered the loading volume). "Loaded" means that render is done.
    scene.setLabelmapOpacity(0.5, false);
    const drawn = scene.labelledRender();
    await scene.showLabelmap();
    await drawn;
    this.hook.loadTimeMs = performance.now();
    $("#loading").hidden = true;
    this.setSaveStatus(
      annotation.head ? `Revision ${annotation.head.number} loaded` : "No revision yet",
    );
    await this.mode.afterLoad();
    // ?slice=<z> (the API's 0-based z): open at that slice (a finding's, from the QC pages).
    const slice = params.get("slice");
    if (slice !== null && /^\d+$/.test(slice)) this.jumpTo(Number(slice));
    this.markers.update();
    this.updateViewerStatus();
    this.ready = true;
    this.mode.refresh();
    this.hook.ready = true;
    console.info(
      `curatect: scan on screen ${Math.round(this.hook.loadTimeMs)} ms after navigation`,
    );
  }

  /** Stream the volume's frames, with the loading bar; fails when loading stalls. */
  private loadVolume(scene: Scene): Promise<void> {
    const bar = $("#loading-bar");
    let failStalled: (error: Error) => void = () => undefined;
    const stalled = new Promise<never>((_, reject) => (failStalled = reject));
    const armStallTimer = () => {
      clearTimeout(this.stallTimer);
      const error = new Error("the images stopped loading; reload the page");
      this.stallTimer = window.setTimeout(() => failStalled(error), STALL_MS);
    };
    armStallTimer();
    const loading = scene.load((done, total) => {
      bar.style.width = `${(100 * done) / total}%`;
      this.hook.progress.push([Math.round(performance.now()), done]);
      armStallTimer();
    });
    return Promise.race([loading, stalled]).finally(() => clearTimeout(this.stallTimer));
  }

  /** The page could not open the scan: say why, where the loading bar was. */
  fail(error: unknown): void {
    console.error(error, error instanceof Error ? error.stack : "");
    this.hook.error = errorMessage(error);
    const message =
      error instanceof ApiError && error.status === 404
        ? "This scan is not available to you."
        : this.hook.error;
    $("#loading").textContent = `Could not open the scan: ${message}`;
    $("#loading").classList.add("error");
  }

  // --- Status lines --------------------------------------------------------------------------

  setSaveStatus(text: string, kind: SaveKind = ""): void {
    const el = $("#save-status");
    el.textContent = text;
    el.dataset.kind = kind;
    this.hook.saveStatus = text;
  }

  updateViewerStatus(): void {
    const scene = this.scene;
    if (!scene) return;
    // Slices are numbered from 1 at the top (head end), as PACS viewers and the findings say.
    const { center, width } = scene.currentWindow();
    $("#viewer-status").textContent = [
      `Slice ${this.currentSlice()} / ${scene.kToZ.length}`,
      this.lastHu,
      `W ${Math.round(width)} L ${Math.round(center)}`,
    ]
      .filter(Boolean)
      .join(" · ");
  }

  batchNav(afterSubmit = false): Promise<BatchPlace> {
    const elements = {
      position: $("#batch-position"),
      bar: $("#batch-bar"),
      previous: $<HTMLAnchorElement>("#prev-scan"),
      next: $<HTMLAnchorElement>("#next-scan"),
    };
    return showBatchNav(elements, this.campaignId, this.scanId, afterSubmit);
  }

  // --- Tools and view ------------------------------------------------------------------------

  setTool(mode: ToolMode): void {
    if (!this.tools || !this.mode.mayUse(mode)) return;
    this.tools.setMode(mode);
    this.mode.toolChanged(mode);
    for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === mode));
    }
    $("#viewport-grid").dataset.tool = mode;
  }

  /** Only viewing from now on: the editing tools and buttons are off, `reason` says why. */
  setReadOnly(reason: string): void {
    this.tools?.setReadOnly();
    this.setTool("windowLevel");
    for (const b of document.querySelectorAll<HTMLButtonElement>(
      "[data-tool], #save, #submit, #undo, #redo, #accept-preseg",
    )) {
      if (b.dataset.tool !== "windowLevel") b.disabled = true;
    }
    this.scanLabels?.setDisabled(true);
    $("#preseg-banner").hidden = false;
    $("#preseg-text").textContent = reason;
    $("#accept-preseg").hidden = true;
  }

  jumpTo(z: number): void {
    const scene = this.scene;
    if (!scene || z < 0 || z >= scene.kToZ.length) return;
    scene.jumpToZ(z);
    this.updateViewerStatus();
    this.markers?.update();
  }

  // --- Slices as a person counts them: 1 = top (head end), next = one slice towards the feet --

  /** The slice number shown now (1 = top). */
  currentSlice(): number {
    return this.scene ? sliceNumber(this.scene.currentZ(), this.geometry) : 0;
  }

  /** Go to slice number `n` (clamped to the scan). */
  goToSlice(n: number): void {
    const last = this.geometry.slices;
    if (!last) return;
    this.jumpTo(sliceZ(Math.min(last, Math.max(1, Math.round(n))), this.geometry));
  }

  /** `delta` slices on: positive is towards the feet (next), negative towards the head. */
  step(delta: number): void {
    this.goToSlice(this.currentSlice() + delta);
  }

  /** The slice numbers that hold labels now, top first. */
  labelledNumbers(): number[] {
    const z = this.labels?.labelledSlices() ?? [];
    return z.map((v) => sliceNumber(v, this.geometry)).sort((a, b) => a - b);
  }

  /** The slice numbers of the findings (placed or to fix), top first, once each. */
  findingNumbers(): number[] {
    const z = this.mode.findings().flatMap((f) => (f.slice === null ? [] : [f.slice]));
    return [...new Set(z.map((v) => sliceNumber(v, this.geometry)))].sort((a, b) => a - b);
  }

  /** Go to the next (`dir` 1, towards the feet) or previous (-1) of `numbers`; say so if none. */
  goToNearest(numbers: number[], dir: 1 | -1, what: string): void {
    const here = this.currentSlice();
    const target =
      dir > 0 ? numbers.find((n) => n > here) : [...numbers].reverse().find((n) => n < here);
    if (target === undefined) {
      const side = dir > 0 ? "below" : "above";
      this.setSaveStatus(
        numbers.length ? `No ${what} ${side} slice ${here}` : `No ${what} in this scan`,
      );
      return;
    }
    this.goToSlice(target);
  }

  /** The page's life (leaving it, hiding it) and the axial view: HU under the pointer, resizing. */
  private wireViewport(): void {
    this.listen(window, "beforeunload", (evt: BeforeUnloadEvent) => {
      if (!this.leaving && this.mode.hasUnsavedWork()) {
        evt.preventDefault();
        evt.returnValue = "";
      }
    });
    this.listen(window, "pagehide", () => this.destroy());
    const scene = this.scene!;
    const element = $("#view-axial");
    this.listen(element, "mousemove", (evt: MouseEvent) => {
      const rect = element.getBoundingClientRect();
      const world = scene
        .viewport("axial")
        .canvasToWorld([evt.clientX - rect.left, evt.clientY - rect.top]);
      const ijk = scene.worldToIJK(world as Types.Point3);
      this.lastHu = ijk ? `HU ${Math.round(scene.huAt(...ijk))}` : "";
      this.updateViewerStatus();
    });
    this.listen(element, CoreEnums.Events.VOLUME_NEW_IMAGE, () => this.updateViewerStatus());
    this.listen(element, CoreEnums.Events.VOI_MODIFIED, () => this.updateViewerStatus());
    const resizing = new ResizeObserver(() => scene.resize(this.ready));
    resizing.observe($("#viewport-grid"));
    this.onDestroy(() => resizing.disconnect());
  }

  /**
   * A click of the primary button (no modifier) on the axial view, at server voxel (z, y, x):
   * the region-growing brush and the finding tool are clicks.
   */
  onVoxelClick(handler: (z: number, y: number, x: number) => void): void {
    const scene = this.scene!;
    this.listen($("#view-axial"), ToolEnums.Events.MOUSE_CLICK, (evt: CustomEvent) => {
      const detail = evt.detail as { event?: MouseEvent; currentPoints: { world: Types.Point3 } };
      const mouse = detail.event;
      if (mouse && (mouse.button !== 0 || mouse.shiftKey || mouse.ctrlKey)) return;
      const ijk = scene.worldToIJK(detail.currentPoints.world);
      if (!ijk) return;
      const [i, j, k] = ijk;
      handler(scene.kToZ[k], j, i);
    });
  }

  /** Once, at pagehide (or by a caller that unmounts the view): release everything. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.stallTimer);
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        cleanup();
      } catch (error) {
        console.warn("curatect: clean-up failed", error);
      }
    }
    this.session?.destroy();
    this.tools?.destroy();
    this.scene?.destroy();
    clearPrefetch();
  }
}
