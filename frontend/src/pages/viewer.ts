// The annotation viewer page (/viewer/<campaign>/<scan>/): wires the API, the Cornerstone
// scene, the tools, the panels and the keyboard together.
import "../styles/app.css";
import "../styles/viewer.css";

import { Enums as CoreEnums, eventTarget } from "@cornerstonejs/core";
import type { Types } from "@cornerstonejs/core";
import { Enums as ToolEnums } from "@cornerstonejs/tools";

import { api, ApiError } from "../api/client";
import { zstd } from "../api/encoding";
import { qcApi } from "../api/qc";
import type { Annotation, Campaign } from "../api/types";
import { showBatchNav } from "../panels/batchNav";
import { ClassPicker } from "../panels/classPicker";
import { HelpOverlay } from "../panels/help";
import { viewerKeydown } from "../panels/keyboard";
import {
  FindingMarkers,
  ReviewPanel,
  showAnnotatorFindings,
  type MarkedFinding,
  type ReviewTarget,
} from "../panels/review";
import { ScanLabelsPanel } from "../panels/scanLabels";
import { History } from "../tools/history";
import { attachRegionGrow, type GrowOptions } from "../tools/regionGrow";
import { ViewerTools, type ToolMode } from "../tools/toolGroup";
import { initCornerstone } from "../viewer/cornerstone";
import { installDebugHook, mark } from "../viewer/debugHook";
import {
  fetchSeriesMetadata,
  frameImageId,
  prefetchSeries,
  registerSeriesMetadata,
  warmScanMetadata,
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

const STATE_WORDS: Record<string, string> = {
  submitted: "in check",
  checked: "checked",
  spot_check: "in the senior's spot check",
  curated: "curated",
};

const root = $("main.viewer");
const campaignId = Number(root.dataset.campaignId);
const scanId = Number(root.dataset.scanId);
const ref: SeriesRef = {
  origin: window.location.origin,
  study: root.dataset.studyUid ?? "",
  series: root.dataset.seriesUid ?? "",
};

let scene: Scene;
let viewerTools: ViewerTools;
let labels: LabelState;
let session: AnnotationSession;
let scanLabels: ScanLabelsPanel;
let classPicker: ClassPicker;
let help: HelpOverlay;
let presetIndex = 0;
let leaving = false; // a reload the person asked for: no "unsaved changes" prompt
let ready = false;

// Check mode: ?check=<id> (a checker) or ?spot_check=<id> (a senior) reviews a revision.
const params = new URLSearchParams(window.location.search);
const checkId = Number(params.get("check")) || null;
const spotCheckId = checkId ? null : Number(params.get("spot_check")) || null;
const reviewing = checkId !== null || spotCheckId !== null;
let markers: FindingMarkers | null = null;
let review: ReviewPanel | null = null;
let annotatorFindings: MarkedFinding[] = [];

const hook = installDebugHook({
  labelVoxelCount: () => labels?.voxelCount() ?? 0,
  classCounts: () => labels?.classCounts() ?? {},
  currentZ: () => scene?.currentZ() ?? -1,
  headRevisionId: () => session?.headId ?? null,
  annotationState: () => session?.state ?? "",
  dirty: () => (session && scanLabels ? session.isDirty(scanLabels.values) : false),
  tool: () => viewerTools?.mode ?? "windowLevel",
  canvasPointOf: (z, y, x) => scene.canvasPointOf(z, y, x),
});
hook.reviewing = reviewing;
hook.findings = () =>
  review ? review.findings.map((f) => ({ ...f })) : annotatorFindings.map((m) => m.finding);
hook.markers = () => markers?.visible() ?? [];

// --- Status lines ----------------------------------------------------------------------------

function setSaveStatus(text: string, kind: "" | "ok" | "warn" | "error" = ""): void {
  const el = $("#save-status");
  el.textContent = text;
  el.dataset.kind = kind;
  hook.saveStatus = text;
}

let lastHu = "";

function updateViewerStatus(): void {
  if (!scene) return;
  // Slices count like the API's z, from 1: slice 1 is the lowest (feet side).
  const { center, width } = scene.currentWindow();
  $("#viewer-status").textContent = [
    `Slice ${scene.currentZ() + 1} / ${scene.kToZ.length}`,
    lastHu,
    `W ${Math.round(width)} L ${Math.round(center)}`,
  ]
    .filter(Boolean)
    .join(" · ");
}

/** An edit happened: a brush or eraser stroke, a grow, an undo or a redo. */
function markEdited(): void {
  session.markLabelsDirty();
  refreshDirty();
}

function refreshDirty(): void {
  if (!session || !ready) return;
  const status = hook.saveStatus;
  if (session.isDirty(scanLabels.values) && status !== "Saving…" && !status.endsWith("unsaved")) {
    setSaveStatus("Unsaved changes", "warn");
  }
  refreshUndo();
}

function refreshUndo(): void {
  $<HTMLButtonElement>("#undo").disabled = !History.canUndo || !session?.editable;
  $<HTMLButtonElement>("#redo").disabled = !History.canRedo || !session?.editable;
}

// --- Tools and view --------------------------------------------------------------------------

function setTool(mode: ToolMode): void {
  const allowed =
    mode === "windowLevel" || (mode === "finding" ? reviewOpen() : !!session?.editable);
  if (!allowed) return;
  viewerTools.setMode(mode);
  review?.toolChanged(mode === "finding");
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === mode));
  }
  $("#viewport-grid").dataset.tool = mode;
}

/** Read a slider, show its value, and return it (`delta` moves it first). */
function slider(id: string, unit: (v: number) => string, delta = 0): number {
  const input = $<HTMLInputElement>(`#${id}`);
  if (delta) input.value = String(Number(input.value) + delta);
  const value = Number(input.value);
  $(`#${id}-value`).textContent = unit(value);
  return value;
}

const brushSize = (delta = 0) => {
  const size = slider("brush-size", (v) => `${v} mm`, delta);
  viewerTools?.setBrushSize(size);
  return size;
};
const tolerance = () => slider("grow-tolerance", (v) => `± ${v} HU`);
const growRadius = () => slider("grow-radius", (v) => `${v} mm`);

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
    grid.querySelector<HTMLElement>(`.viewport-cell.${view}`)!.hidden = !on;
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

function toggleLabels(): void {
  const box = $<HTMLInputElement>("#labels-visible");
  box.checked = !box.checked;
  scene.setLabelmapVisible(box.checked);
}

function undo(): void {
  if (session.editable && History.canUndo) {
    History.undo();
    markEdited();
  }
}

function redo(): void {
  if (session.editable && History.canRedo) {
    History.redo();
    markEdited();
  }
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
        `Saved · revision ${outcome.revision.number} · ${new Date().toLocaleTimeString()}`,
        "ok",
      );
      $("#preseg-banner").hidden = true;
      void batchNav();
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
  // What is submitted is a person's revision: a pre-segmentation head is saved as one first.
  const modelHead = session.head?.source !== "human";
  if ((modelHead || session.isDirty(scanLabels.values)) && !(await save(modelHead))) return;
  try {
    setSaveStatus("Submitting…");
    await session.submit();
    setSaveStatus("Submitted for checking", "ok");
    setReadOnly("Submitted for checking: read-only until the checkers have given their verdicts.");
    await batchNav(true);
  } catch (error) {
    setSaveStatus(`Not submitted: ${error instanceof Error ? error.message : error}`, "error");
  }
}

const reviewOpen = (): boolean => review?.open ?? false;

function jumpTo(z: number): void {
  if (!scene || z < 0 || z >= scene.kToZ.length) return;
  scene.jumpToZ(z);
  updateViewerStatus();
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
  $("#preseg-banner").hidden = false;
  $("#preseg-text").textContent = reason;
  $("#accept-preseg").hidden = true;
}

function batchNav(afterSubmit = false): ReturnType<typeof showBatchNav> {
  const elements = {
    position: $("#batch-position"),
    bar: $("#batch-bar"),
    previous: $<HTMLAnchorElement>("#prev-scan"),
    next: $<HTMLAnchorElement>("#next-scan"),
  };
  return showBatchNav(elements, campaignId, scanId, afterSubmit);
}

// --- Wiring ------------------------------------------------------------------------------------

function wireControls(campaign: Campaign): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
    button.addEventListener("click", () => setTool(button.dataset.tool as ToolMode));
  }
  $("#brush-size").addEventListener("input", () => brushSize());
  $("#grow-tolerance").addEventListener("input", tolerance);
  $("#grow-radius").addEventListener("input", growRadius);
  $("#undo").addEventListener("click", undo);
  $("#redo").addEventListener("click", redo);
  $("#labels-visible").addEventListener("change", (evt) =>
    scene.setLabelmapVisible((evt.target as HTMLInputElement).checked),
  );
  $("#labels-opacity").addEventListener("input", () =>
    scene.setLabelmapOpacity(slider("labels-opacity", (v) => `${v} %`) / 100),
  );
  $("#mpr-toggle").addEventListener(
    "change",
    (evt) => void setMpr((evt.target as HTMLInputElement).checked),
  );
  $("#window-presets").replaceChildren(
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
  classPicker = new ClassPicker($("#class-picker"), campaign.label_schema.classes, (value) =>
    scene.setActiveClass(value),
  );
  scanLabels = new ScanLabelsPanel(
    $("#scan-labels"),
    campaign.label_schema.scan_labels ?? [],
    refreshDirty,
  );
  help = new HelpOverlay($("#help"));
  $("#help-button").addEventListener("click", () => help.open());
  const keydown = viewerKeydown(
    {
      tool: setTool,
      classIndex: (i) => classPicker.selectIndex(i),
      brushSize: (delta) => void brushSize(delta),
      nextWindowPreset: () => applyPreset((presetIndex + 1) % WINDOW_PRESETS.length),
      toggleLabels,
      toggleMpr: () => void setMpr(!$<HTMLInputElement>("#mpr-toggle").checked),
      scroll: (delta) => scene.viewport("axial").scroll(delta),
      toEnd: (last) =>
        scene.viewport("axial").scroll(last ? scene.kToZ.length : -scene.kToZ.length),
      undo,
      redo,
      save: () => void save(),
    },
    help,
  );
  document.addEventListener("keydown", keydown);
  window.addEventListener("beforeunload", (evt) => {
    const unsentFindings = review?.open && review.findings.length > 0;
    if (!leaving && (unsentFindings || (session?.editable && session.isDirty(scanLabels.values)))) {
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
  // Edits are marked where they happen (stroke, grow, undo, redo): Cornerstone's segmentation
  // events also fire for loading and display changes, so they cannot tell an edit.
  let stroke = false;
  element.addEventListener("pointerdown", (evt) => {
    const brushing = viewerTools.mode === "brush" || viewerTools.mode === "eraser";
    stroke = evt.button === 0 && !evt.shiftKey && !evt.ctrlKey && session.editable && brushing;
  });
  window.addEventListener("pointerup", () => {
    if (stroke) markEdited();
    stroke = false;
  });
  new ResizeObserver(() => scene.resize(ready)).observe($("#viewport-grid"));
  eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, refreshUndo);
  attachRegionGrow(element, growOptions());
  // The finding tool (check mode): a click records the voxel under it, in the API's (z, y, x).
  element.addEventListener(ToolEnums.Events.MOUSE_CLICK, (evt) => {
    if (viewerTools.mode !== "finding" || !review?.open) return;
    const detail = (evt as CustomEvent).detail as {
      event?: MouseEvent;
      currentPoints: { world: Types.Point3 };
    };
    const mouse = detail.event;
    if (mouse && (mouse.button !== 0 || mouse.shiftKey || mouse.ctrlKey)) return;
    const ijk = scene.worldToIJK(detail.currentPoints.world);
    if (!ijk) return;
    const [i, j, k] = ijk;
    review.place(scene.kToZ[k], j, i);
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
    radiusMm: growRadius,
    classValue: () => classPicker.current,
    onStart: () => setSaveStatus("Growing region…"),
    onDone: (result, painted) => {
      hook.lastGrow = result;
      if (painted) markEdited();
      const capped = result.capped ? " (capped: lower the tolerance or the radius)" : "";
      const voxels = result.voxels.toLocaleString();
      setSaveStatus(
        painted
          ? `Grew ${voxels} voxels from ${Math.round(result.seed_hu)} HU${capped} · unsaved`
          : result.message || "No region grew from there",
        painted || result.capped ? "warn" : "",
      );
      refreshUndo();
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

/** The starting point: the head revision (a person's, or the model's pre-segmentation). */
function showStartingPoint(annotation: Annotation, target: ReviewTarget | null): void {
  if (target) {
    setReadOnly(`Revision ${target.revisionNumber} under review: read-only.`);
    review = new ReviewPanel($("#review-panel"), {
      target,
      markers: markers!,
      jumpTo,
      setFindingTool: (on) => setTool(on ? "finding" : "windowLevel"),
      findingToolOn: () => viewerTools.mode === "finding",
    });
    if (review.open) setTool("finding");
    return;
  }
  if (session.state === "viewing") {
    setReadOnly("Read-only: this scan is not in one of your batches.");
    return;
  }
  if (!session.editable) {
    const state = STATE_WORDS[annotation.state] ?? annotation.state.replace("_", " ");
    setReadOnly(`This scan is ${state}: read-only.`);
    return;
  }
  if (annotation.head?.source === "model") {
    $("#preseg-banner").hidden = false;
    $("#preseg-text").textContent = "Starting point: the pre-segmentation. Edit it, or:";
  }
  setTool("brush");
}

/** The check or spot check of check mode, from the QC API (only what it shows this person). */
async function loadReviewTarget(): Promise<ReviewTarget> {
  let target: ReviewTarget;
  if (checkId !== null) {
    const c = await qcApi.check(checkId);
    target = {
      kind: "check",
      id: c.id,
      campaignId: c.campaign.id,
      scanId: c.scan_id,
      revisionId: c.revision.id,
      revisionNumber: c.revision.number,
      scanLabels: c.revision.scan_labels,
      open: c.mine && c.verdict === "pending",
      closedReason: c.mine
        ? `Your verdict: ${c.verdict}. Read-only.`
        : "This check is not assigned to you: read-only.",
      findings: c.findings,
      queueUrl: "/qc/checks/",
      submit: (body) => qcApi.checkVerdict(c.id, body),
    };
  } else {
    const s = await qcApi.spotCheck(spotCheckId!);
    target = {
      kind: "spot_check",
      id: s.id,
      campaignId: s.campaign.id,
      scanId: s.scan_id,
      revisionId: s.revision.id,
      revisionNumber: s.revision.number,
      scanLabels: s.revision.scan_labels,
      open: s.verdict === "pending",
      closedReason: `Verdict: ${s.verdict}. Read-only.`,
      findings: s.findings,
      queueUrl: "/qc/spot-checks/",
      submit: (body) => qcApi.spotCheckVerdict(s.id, body),
    };
  }
  if (target.campaignId !== campaignId || target.scanId !== scanId) {
    throw new Error(`this ${target.kind.replace("_", " ")} is about another scan`);
  }
  return target;
}

async function main(): Promise<void> {
  // Every independent request at once; the frames stream in while Cornerstone starts.
  const scanP = api.scan(scanId);
  const campaignP = api.campaign(campaignId);
  const reviewP = reviewing ? loadReviewTarget() : null;
  reviewP?.catch(() => undefined);
  // Check mode shows the revision under review, never the annotation's head.
  const annotationP: Promise<Annotation> = reviewP
    ? reviewP.then(() => ({ id: null, state: "reviewing", head: null }))
    : api.annotation(campaignId, scanId);
  const labelsP = reviewP
    ? reviewP.then((t) => api.labels(campaignId, scanId, t.revisionId))
    : annotationP.then((a) => (a.head ? api.labels(campaignId, scanId) : null));
  labelsP.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
  // The annotator's findings to fix, when the scan came back from QC.
  const findingsP = reviewP
    ? Promise.resolve(null)
    : annotationP
        .then((a) => (a.state === "needs_revision" ? qcApi.findings(campaignId, scanId) : null))
        .catch((error) => {
          console.warn("curatect: findings not loaded", error);
          return null;
        });
  const metadataP = fetchSeriesMetadata(ref);
  const scan = await scanP;
  mark(hook, "scan");
  const imageIds = scan.instances.map((sop) => frameImageId(ref, sop));
  // ?prefetch=0 (one request per frame), ?chunk=, ?parallel=: for measuring the loader.
  if (params.get("prefetch") !== "0") {
    const options = {
      chunk: Number(params.get("chunk") ?? 32),
      parallel: Number(params.get("parallel") ?? 4),
    };
    void prefetchSeries(ref, imageIds, options).then(() => (hook.bulkFramesMs = performance.now()));
  }

  await initCornerstone();
  registerSeriesMetadata(ref, await metadataP);
  mark(hook, "metadata");
  scene = new Scene(scanId, {
    axial: $("#view-axial"),
    coronal: $("#view-coronal"),
    sagittal: $("#view-sagittal"),
  });
  viewerTools = new ViewerTools(scene.toolGroupId);
  await scene.createVolume(imageIds);
  await scene.enableView("axial", false);
  mark(hook, "viewport");
  $("#view-axial").addEventListener(CoreEnums.Events.IMAGE_RENDERED, () => {
    hook.firstImageMs ??= performance.now();
    hook.renders++;
  });
  // Open at the middle of the scan, where the lungs are (and where the prefetch starts).
  scene.jumpToZ(Math.floor(scan.slices / 2), "axial", false);
  const bar = $("#loading-bar");
  // A load that stops making progress says so, instead of spinning for ever.
  let stallTimer: number | undefined;
  let failStalled: (error: Error) => void = () => undefined;
  const stalled = new Promise<never>((_, reject) => (failStalled = reject));
  const armStallTimer = () => {
    clearTimeout(stallTimer);
    const error = new Error("the images stopped loading; reload the page");
    stallTimer = window.setTimeout(() => failStalled(error), 60000);
  };
  armStallTimer();
  const loading = scene.load((done, total) => {
    bar.style.width = `${(100 * done) / total}%`;
    hook.progress.push([Math.round(performance.now()), done]);
    armStallTimer();
  });
  const loaded = Promise.race([loading, stalled]).finally(() => clearTimeout(stallTimer));

  const [campaign, annotation] = await Promise.all([campaignP, annotationP]);
  scene.createLabelmap(campaign.label_schema.classes);
  labels = new LabelState(scene);
  session = new AnnotationSession(campaignId, scanId, annotation, labels);
  wireControls(campaign);
  scene.setActiveClass(classPicker.current);
  wireViewport();
  brushSize();
  tolerance();
  growRadius();
  markers = new FindingMarkers(scene, $("#view-axial"));
  if (reviewing) root.classList.add("reviewing");
  const placeP = reviewing ? Promise.resolve({ inMyBatch: false, next: null }) : batchNav();
  void placeP.then(({ next }) => {
    // Once this scan is on screen, get the next one's metadata ready.
    if (next !== null) loaded.then(() => warmScanMetadata(next)).catch(() => undefined);
  });

  const labelVolume = await labelsP;
  mark(hook, "labels");
  if (labelVolume) {
    labels.loadVolume(zstd(labelVolume.compressed), labelVolume.shape);
    scanLabels.values = annotation.head?.scan_labels ?? {};
  }
  const target = reviewP ? await reviewP : null;
  if (target) scanLabels.values = target.scanLabels;
  const { inMyBatch } = await placeP;
  if (!inMyBatch) session.state = "viewing";

  await loaded;
  mark(hook, "frames");
  // Choosing a tool re-renders the tool group's viewports: chosen before the viewport joins.
  showStartingPoint(annotation, target);
  viewerTools.addViewport(scene.viewportId("axial"), scene.engine.id);
  // One render for what is left: the CT texture and the labelmap, added only now (earlier,
  // each change to it re-rendered the loading volume). "Loaded" means that render is done.
  scene.setLabelmapOpacity(0.5, false);
  const drawn = scene.labelledRender();
  await scene.showLabelmap();
  await drawn;
  hook.loadTimeMs = performance.now();
  $("#loading").hidden = true;
  setSaveStatus(annotation.head ? `Revision ${annotation.head.number} loaded` : "No revision yet");
  const findings = await findingsP;
  if (findings && findings.reviews.length) {
    annotatorFindings = showAnnotatorFindings($("#findings-panel"), findings, markers, jumpTo);
  }
  // ?slice=<z>: open at that slice (a finding's, from the QC pages).
  const slice = params.get("slice");
  if (slice !== null && /^\d+$/.test(slice)) jumpTo(Number(slice));
  markers.update();
  updateViewerStatus();
  ready = true;
  refreshDirty();
  hook.ready = true;
  console.info(`curatect: scan on screen ${Math.round(hook.loadTimeMs)} ms after navigation`);
}

main().catch((error) => {
  console.error(error, error instanceof Error ? error.stack : "");
  hook.error = error instanceof Error ? error.message : String(error);
  const message =
    error instanceof ApiError && error.status === 404
      ? "This scan is not available to you."
      : hook.error;
  $("#loading").textContent = `Could not open the scan: ${message}`;
  $("#loading").classList.add("error");
});
