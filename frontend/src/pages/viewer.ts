// The annotation viewer page (/viewer/<campaign>/<scan>/): wires API, Cornerstone scene,
// tools, panels and keyboard together.
import "../styles/app.css";
import "../styles/viewer.css";

import { Enums as CoreEnums, eventTarget } from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import { api, ApiError } from "../api/client";
import { zstd } from "../api/encoding";
import type { Campaign, RegionGrowResult, WorklistBatch } from "../api/types";
import { ClassPicker } from "../panels/classPicker";
import { HelpOverlay } from "../panels/help";
import { nextUnfinished, progressBar, viewerUrl } from "../panels/progress";
import { ScanLabelsPanel } from "../panels/scanLabels";
import { History } from "../tools/history";
import { attachRegionGrow, type GrowOptions } from "../tools/regionGrow";
import { ViewerTools, type ToolMode } from "../tools/toolGroup";
import { initCornerstone } from "../viewer/cornerstone";
import {
  frameImageId,
  loadSeriesMetadata,
  prefetchSeries,
  type SeriesRef,
} from "../viewer/dicomweb";
import { LabelState } from "../viewer/labels";
import { Scene, WINDOW_PRESETS, type ViewName } from "../viewer/scene";
import { AnnotationSession } from "../viewer/session";

const $ = <T extends HTMLElement = HTMLElement>(selector: string): T => {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
};

/** Read-only hook for browser tests (tests/browser/): load state and the client's mask. */
interface DebugHook {
  ready: boolean;
  error: string | null;
  firstImageMs: number | null;
  loadTimeMs: number | null;
  bulkFramesMs: number | null;
  /** [ms after navigation, frames loaded] as the volume streams in */
  progress: [number, number][];
  /** ms after navigation at which each loading step finished */
  marks: Record<string, number>;
  saveStatus: string;
  labelVoxelCount(): number;
  classCounts(): Record<string, number>;
  sliceIndex(): number;
  currentZ(): number;
  headRevisionId(): number | null;
  annotationState(): string;
  dirty(): boolean;
  tool(): ToolMode;
  canvasPointOf(z: number, y: number, x: number): [number, number];
  lastGrow: RegionGrowResult | null;
}

declare global {
  interface Window {
    curatect: DebugHook;
  }
}

const root = $("main.viewer");
const campaignId = Number(root.dataset.campaignId);
const scanId = Number(root.dataset.scanId);
const ref: SeriesRef = {
  origin: window.location.origin,
  study: root.dataset.studyUid ?? "",
  series: root.dataset.seriesUid ?? "",
};

const mark = (name: string) => (hook.marks[name] = Math.round(performance.now()));

const hook: DebugHook = {
  ready: false,
  error: null,
  firstImageMs: null,
  loadTimeMs: null,
  bulkFramesMs: null,
  progress: [],
  marks: {},
  saveStatus: "",
  labelVoxelCount: () => labels?.voxelCount() ?? 0,
  classCounts: () => labels?.classCounts() ?? {},
  sliceIndex: () => scene?.viewport("axial").getSliceIndex() ?? -1,
  currentZ: () => scene?.currentZ() ?? -1,
  headRevisionId: () => session?.headId ?? null,
  annotationState: () => session?.state ?? "",
  dirty: () => (session && scanLabels ? session.isDirty(scanLabels.values) : false),
  tool: () => viewerTools?.mode ?? "windowLevel",
  canvasPointOf: (z, y, x) => scene.canvasPointOf(z, y, x),
  lastGrow: null,
};
window.curatect = hook;

let scene: Scene;
let viewerTools: ViewerTools;
let labels: LabelState;
let session: AnnotationSession;
let scanLabels: ScanLabelsPanel;
let classPicker: ClassPicker;
let help: HelpOverlay;
let presetIndex = 0;
let leaving = false;
let suppressDirty = false;

// --- Status lines ----------------------------------------------------------------------------

function setSaveStatus(text: string, kind: "" | "ok" | "warn" | "error" = ""): void {
  const el = $("#save-status");
  el.textContent = text;
  el.dataset.kind = kind;
  hook.saveStatus = text;
}

let lastHu: string = "";

function updateViewerStatus(): void {
  if (!scene) return;
  const viewport = scene.viewport("axial");
  const slice = viewport.getSliceIndex() + 1;
  const total = viewport.getNumberOfSlices();
  const { center, width } = scene.currentWindow();
  $("#viewer-status").textContent =
    `Slice ${slice} / ${total} · ${lastHu} · W ${Math.round(width)} L ${Math.round(center)}`;
}

function refreshDirty(): void {
  if (!session) return;
  const dirty = session.isDirty(scanLabels.values);
  if (dirty && !["Saving…"].includes(hook.saveStatus)) setSaveStatus("Unsaved changes", "warn");
  ($("#undo") as HTMLButtonElement).disabled = !History.canUndo || !session.editable;
  ($("#redo") as HTMLButtonElement).disabled = !History.canRedo || !session.editable;
}

// --- Tools -------------------------------------------------------------------------------------

function setTool(mode: ToolMode): void {
  if (!session?.editable && mode !== "windowLevel") return;
  viewerTools.setMode(mode);
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === mode));
  }
  $("#viewport-grid").dataset.tool = mode;
}

function brushSize(delta = 0): number {
  const input = $<HTMLInputElement>("#brush-size");
  if (delta) input.value = String(Number(input.value) + delta);
  const size = Number(input.value);
  $("#brush-size-value").textContent = `${size} mm`;
  viewerTools?.setBrushSize(size);
  return size;
}

function tolerance(): number {
  const value = Number($<HTMLInputElement>("#grow-tolerance").value);
  $("#grow-tolerance-value").textContent = `± ${value} HU`;
  return value;
}

function nextPreset(): void {
  presetIndex = (presetIndex + 1) % WINDOW_PRESETS.length;
  applyPreset(presetIndex);
}

function applyPreset(index: number): void {
  presetIndex = index;
  scene.setWindow(WINDOW_PRESETS[index]);
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-preset]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.preset) === index));
  }
  updateViewerStatus();
}

async function setMpr(on: boolean): Promise<void> {
  $<HTMLInputElement>("#mpr-toggle").checked = on;
  const grid = $("#viewport-grid");
  grid.classList.toggle("mpr", on);
  for (const view of ["coronal", "sagittal"] as ViewName[]) {
    const cell = grid.querySelector<HTMLElement>(`.viewport-cell.${view}`)!;
    cell.hidden = !on;
    if (on) {
      await scene.enableView(view);
      viewerTools.addViewport(scene.viewportId(view), scene.engine.id);
    } else if (scene.enabledViews().includes(view)) {
      viewerTools.removeViewport(scene.viewportId(view), scene.engine.id);
      scene.disableView(view);
    }
  }
  scene.resize();
  scene.renderAll();
}

function scrollSlices(delta: number): void {
  scene.viewport("axial").scroll(delta);
}

function jumpToEnd(last: boolean): void {
  const viewport = scene.viewport("axial");
  const total = viewport.getNumberOfSlices();
  viewport.scroll(last ? total : -total);
}

function toggleLabels(): void {
  const box = $<HTMLInputElement>("#labels-visible");
  box.checked = !box.checked;
  scene.setLabelmapVisible(box.checked);
}

// --- Save and submit ------------------------------------------------------------------------

async function save(force = false): Promise<boolean> {
  if (!session.editable) return false;
  setSaveStatus("Saving…");
  $<HTMLButtonElement>("#save").disabled = true;
  const outcome = await session.save(scanLabels.values, force);
  $<HTMLButtonElement>("#save").disabled = false;
  switch (outcome.kind) {
    case "saved":
      setSaveStatus(
        `Saved · revision ${outcome.revision.number ?? session.headId} · ${new Date().toLocaleTimeString()}`,
        "ok",
      );
      $("#preseg-banner").hidden = true;
      return true;
    case "nothing":
      setSaveStatus("Saved · no changes", "ok");
      return true;
    case "conflict":
      setSaveStatus("Conflict: not saved", "error");
      $("#conflict").hidden = false;
      $<HTMLButtonElement>("#reload").focus();
      return false;
    case "error":
      setSaveStatus(`Not saved: ${outcome.detail}`, "error");
      return false;
  }
}

async function submit(): Promise<void> {
  if (!session.editable) return;
  const missing = scanLabels.missing();
  if (missing.length) {
    setSaveStatus(`Set ${missing.join(", ")} before submitting`, "error");
    $<HTMLSelectElement>("#scan-labels select").focus();
    return;
  }
  const dirtyOrNew = session.isDirty(scanLabels.values) || session.head?.source !== "human";
  if (dirtyOrNew && !(await save(session.head?.source !== "human"))) return;
  try {
    setSaveStatus("Submitting…");
    await session.submit();
    setSaveStatus("Submitted for checking", "ok");
    setReadOnly("Submitted for checking: read-only until the checkers have given their verdicts.");
    await loadBatch(true);
  } catch (error) {
    setSaveStatus(`Not submitted: ${error instanceof Error ? error.message : error}`, "error");
  }
}

function setReadOnly(reason: string): void {
  viewerTools.setReadOnly();
  setTool("windowLevel");
  for (const b of document.querySelectorAll<HTMLButtonElement>(
    "[data-tool], #save, #submit, #undo, #redo, #accept-preseg",
  )) {
    if (b.dataset.tool !== "windowLevel") b.disabled = true;
  }
  scanLabels.setDisabled(true);
  const banner = $("#preseg-banner");
  banner.hidden = false;
  $("#preseg-text").textContent = reason;
  $("#accept-preseg").hidden = true;
}

// --- Batch navigation ------------------------------------------------------------------------

async function loadBatch(afterSubmit = false): Promise<void> {
  let batches: WorklistBatch[] = [];
  try {
    batches = await api.worklist();
  } catch {
    return; // not an annotator of a batch (e.g. a data manager looking): no batch bar
  }
  const batch = batches.find(
    (b) => b.campaign.id === campaignId && b.items.some((i) => i.scan_id === scanId),
  );
  if (!batch) return;
  const items = [...batch.items].sort((a, b) => a.position - b.position);
  const index = items.findIndex((i) => i.scan_id === scanId);
  $("#batch-position").textContent = `${batch.name} · scan ${index + 1} of ${items.length}`;
  progressBar($("#batch-bar"), batch.progress);
  const link = (el: HTMLAnchorElement, targetScan: number | undefined, label: string) => {
    el.hidden = targetScan === undefined;
    if (targetScan !== undefined) {
      el.href = viewerUrl(campaignId, targetScan);
      el.removeAttribute("aria-disabled");
      el.textContent = label;
    }
  };
  link($("#prev-scan"), items[index - 1]?.scan_id, "← Previous");
  link($("#next-scan"), items[index + 1]?.scan_id, "Next →");
  if (afterSubmit) {
    const next = nextUnfinished(batch, items[index]?.position ?? -1);
    if (next !== null && next !== scanId) link($("#next-scan"), next, "Next unfinished scan →");
    $("#next-scan").focus();
  }
}

// --- Keyboard --------------------------------------------------------------------------------

function onKeyDown(evt: KeyboardEvent): void {
  const target = evt.target as HTMLElement;
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName);
  const ctrl = evt.ctrlKey || evt.metaKey;
  const key = evt.key;
  if (help.isOpen) {
    if (key === "Escape" || key === "?") {
      evt.preventDefault();
      help.close();
    }
    return;
  }
  if (ctrl && key.toLowerCase() === "s") {
    evt.preventDefault();
    void save();
    return;
  }
  if (ctrl && (key.toLowerCase() === "y" || (key.toLowerCase() === "z" && evt.shiftKey))) {
    evt.preventDefault();
    if (session.editable) History.redo();
    refreshDirty();
    return;
  }
  if (ctrl && key.toLowerCase() === "z") {
    evt.preventDefault();
    if (session.editable) History.undo();
    refreshDirty();
    return;
  }
  if (typing || ctrl || evt.altKey) return;
  const actions: Record<string, () => void> = {
    b: () => setTool("brush"),
    e: () => setTool("eraser"),
    g: () => setTool("grow"),
    l: () => setTool("windowLevel"),
    w: nextPreset,
    h: toggleLabels,
    m: () => void setMpr(!$<HTMLInputElement>("#mpr-toggle").checked),
    "[": () => brushSize(-1),
    "]": () => brushSize(1),
    "?": () => help.open(),
    ArrowUp: () => scrollSlices(-1),
    ArrowLeft: () => scrollSlices(-1),
    ArrowDown: () => scrollSlices(1),
    ArrowRight: () => scrollSlices(1),
    PageUp: () => scrollSlices(-10),
    PageDown: () => scrollSlices(10),
    Home: () => jumpToEnd(false),
    End: () => jumpToEnd(true),
  };
  const action = actions[key] ?? actions[key.toLowerCase()];
  if (action) {
    evt.preventDefault();
    action();
    return;
  }
  if (/^[1-9]$/.test(key)) {
    evt.preventDefault();
    classPicker.selectIndex(Number(key) - 1);
  }
}

// --- Wiring ------------------------------------------------------------------------------------

function wireControls(campaign: Campaign): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
    button.addEventListener("click", () => setTool(button.dataset.tool as ToolMode));
  }
  $("#brush-size").addEventListener("input", () => brushSize());
  $("#grow-tolerance").addEventListener("input", () => tolerance());
  $("#undo").addEventListener("click", () => {
    History.undo();
    refreshDirty();
  });
  $("#redo").addEventListener("click", () => {
    History.redo();
    refreshDirty();
  });
  $("#labels-visible").addEventListener("change", (evt) =>
    scene.setLabelmapVisible((evt.target as HTMLInputElement).checked),
  );
  $("#labels-opacity").addEventListener("input", (evt) => {
    const value = Number((evt.target as HTMLInputElement).value);
    $("#labels-opacity-value").textContent = `${value} %`;
    scene.setLabelmapOpacity(value / 100);
  });
  $("#mpr-toggle").addEventListener(
    "change",
    (evt) => void setMpr((evt.target as HTMLInputElement).checked),
  );
  const presets = $("#window-presets");
  presets.replaceChildren(
    ...WINDOW_PRESETS.map((preset, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.preset = String(index);
      button.textContent = preset.name;
      button.title = `W ${preset.width} L ${preset.center}`;
      button.setAttribute("aria-pressed", String(index === 0));
      button.addEventListener("click", () => applyPreset(index));
      return button;
    }),
  );
  $("#save").addEventListener("click", () => void save());
  $("#submit").addEventListener("click", () => void submit());
  $("#accept-preseg").addEventListener("click", () => void save(true));
  $("#reload").addEventListener("click", () => {
    leaving = true;
    window.location.reload();
  });
  help = new HelpOverlay($("#help"));
  $("#help-button").addEventListener("click", () => help.open());
  classPicker = new ClassPicker($("#class-picker"), campaign.label_schema.classes, (value) =>
    scene.setActiveClass(value),
  );
  scanLabels = new ScanLabelsPanel($("#scan-labels"), campaign.label_schema.scan_labels ?? [], () =>
    refreshDirty(),
  );
  document.addEventListener("keydown", onKeyDown);
  window.addEventListener("beforeunload", (evt) => {
    if (!leaving && session?.editable && session.isDirty(scanLabels.values)) {
      evt.preventDefault();
      evt.returnValue = "";
    }
  });
  window.addEventListener("pagehide", destroy);
}

function wireViewport(): void {
  const element = $("#view-axial");
  element.addEventListener("mousemove", (evt) => {
    const rect = element.getBoundingClientRect();
    const world = scene
      .viewport("axial")
      .canvasToWorld([evt.clientX - rect.left, evt.clientY - rect.top]);
    const ijk = scene.worldToIJK(world as Types.Point3);
    lastHu = ijk ? `HU ${Math.round(scene.huAt(...ijk))}` : "";
    updateViewerStatus();
  });
  element.addEventListener(CoreEnums.Events.VOLUME_NEW_IMAGE, updateViewerStatus);
  element.addEventListener(CoreEnums.Events.VOI_MODIFIED, updateViewerStatus);
  element.addEventListener("pointerup", () => setTimeout(refreshDirty, 0));
  new ResizeObserver(() => scene.resize()).observe($("#viewport-grid"));
  eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, () => {
    if (suppressDirty) return;
    session?.markLabelsDirty();
    refreshDirty();
  });
}

function growOptions(): GrowOptions {
  return {
    campaignId,
    scanId,
    scene,
    labels,
    isActive: () => viewerTools.mode === "grow" && session.editable,
    tolerance,
    classValue: () => classPicker.current,
    onStart: () => setSaveStatus("Growing region…"),
    onDone: (result, painted) => {
      hook.lastGrow = result;
      const note = result.capped ? " (capped: lower the tolerance or click nearer the centre)" : "";
      setSaveStatus(
        painted
          ? `Region: ${result.voxels.toLocaleString()} voxels from ${Math.round(result.seed_hu)} HU${note}`
          : result.message || "No region grew from there",
        result.capped ? "warn" : "",
      );
      refreshDirty();
    },
    onError: (error) =>
      setSaveStatus(
        `Region growing failed: ${error instanceof Error ? error.message : error}`,
        "error",
      ),
  };
}

function destroy(): void {
  session?.destroy();
  viewerTools?.destroy();
  scene?.destroy();
}

async function main(): Promise<void> {
  const started = performance.now();
  // Start every independent request at once.
  const scanP = api.scan(scanId);
  const campaignP = api.campaign(campaignId);
  const annotationP = api.annotation(campaignId, scanId);
  const labelsP = annotationP.then((a) => (a.head ? api.labels(campaignId, scanId) : null));
  labelsP.catch(() => undefined);
  const metadataP = loadSeriesMetadata(ref);
  const scan = await scanP;
  mark("scan");
  const imageIds = scan.instances.map((sop) => frameImageId(ref, sop));
  const params = new URLSearchParams(window.location.search);
  if (params.get("prefetch") !== "0") {
    prefetchSeries(ref, imageIds, {
      chunk: Number(params.get("chunk") ?? 32),
      parallel: Number(params.get("parallel") ?? 4),
    }).then(() => (hook.bulkFramesMs = performance.now()));
  }

  await initCornerstone();
  mark("init");
  await metadataP;
  mark("metadata");
  scene = new Scene(scanId, {
    axial: $("#view-axial"),
    coronal: $("#view-coronal"),
    sagittal: $("#view-sagittal"),
  });
  viewerTools = new ViewerTools(scene.toolGroupId);
  await scene.createVolume(imageIds);
  mark("volume");
  await scene.enableView("axial", false);
  mark("viewport");
  viewerTools.addViewport(scene.viewportId("axial"), scene.engine.id);
  const firstImage = (evt: Event) => {
    hook.firstImageMs ??= performance.now();
    evt.currentTarget?.removeEventListener(CoreEnums.Events.IMAGE_RENDERED, firstImage);
  };
  $("#view-axial").addEventListener(CoreEnums.Events.IMAGE_RENDERED, firstImage);
  // Start in the middle of the scan, where the lungs are (and where the prefetch starts).
  scene.jumpToZ(Math.floor(scan.slices / 2), "axial", false);
  const bar = $("#loading-bar");
  const loaded = scene.load((done, total) => {
    bar.style.width = `${(100 * done) / total}%`;
    hook.progress.push([Math.round(performance.now()), done]);
  });

  const [campaign, annotation] = await Promise.all([campaignP, annotationP]);
  wireControls(campaign);
  scene.createLabelmap(campaign.label_schema.classes);
  scene.setActiveClass(classPicker.current);
  labels = new LabelState(scene);
  session = new AnnotationSession(campaignId, scanId, annotation, labels);
  wireViewport();
  attachRegionGrow($("#view-axial"), growOptions());
  brushSize();
  tolerance();
  void loadBatch();

  const labelVolume = await labelsP;
  mark("labelsFetched");
  if (labelVolume) {
    suppressDirty = true;
    try {
      labels.loadVolume(zstd(labelVolume.compressed), labelVolume.shape);
    } finally {
      suppressDirty = false;
    }
    scanLabels.values = annotation.head?.scan_labels ?? {};
  }
  if (!session.editable) {
    setReadOnly(`This scan is ${annotation.state.replace("_", " ")}: read-only.`);
  } else if (annotation.head?.source === "model") {
    $("#preseg-banner").hidden = false;
    $("#preseg-text").textContent =
      "Starting point: the pre-segmentation. Edit it, or accept it as it is.";
    setTool("brush");
  } else {
    setTool("brush");
  }
  await loaded;
  mark("volume loaded");
  // The labelmap joins the view once the CT is in: one render for both (see Scene.load).
  await scene.showLabelmap();
  scene.setLabelmapOpacity(0.5);
  hook.loadTimeMs = performance.now();
  $("#loading").hidden = true;
  setSaveStatus(annotation.head ? `Revision ${annotation.head.number} loaded` : "No revision yet");
  updateViewerStatus();
  refreshDirty();
  hook.ready = true;
  console.info(
    `curatect: volume loaded ${Math.round(hook.loadTimeMs)} ms after navigation (${Math.round(hook.loadTimeMs - started)} ms after script start)`,
  );
}

main().catch((error) => {
  console.error(error);
  hook.error = error instanceof Error ? error.message : String(error);
  const message =
    error instanceof ApiError && error.status === 404
      ? "This scan is not available to you."
      : hook.error;
  $("#loading").textContent = `Could not open the scan: ${message}`;
  $("#loading").classList.add("error");
});

// TEMP-BENCH
(window as unknown as Record<string, unknown>).__bench = async (n = 5) => {
  const vp = scene.viewport("axial");
  const el = document.querySelector("#view-axial")!;
  const once = () =>
    new Promise<number>((resolve) => {
      const t = performance.now();
      el.addEventListener(CoreEnums.Events.IMAGE_RENDERED, () => resolve(performance.now() - t), {
        once: true,
      });
      vp.render();
    });
  const draws: number[] = [];
  for (let i = 0; i < n; i++) draws.push(await once());
  const tex = (
    scene.volume as unknown as { vtkOpenGLTexture: { setUpdatedFrame(i: number): void } }
  ).vtkOpenGLTexture;
  for (let i = 0; i < scene.volume.imageIds.length; i++) tex.setUpdatedFrame(i);
  const upload = await once();
  return {
    draws,
    upload,
    dataType: (scene.volume as unknown as { dataType: string }).dataType,
    canvas: [vp.canvas.width, vp.canvas.height],
  };
};
