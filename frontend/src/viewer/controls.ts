// The controls both modes share: tool buttons, brush and grow sliders, labelmap display,
// window presets, MPR, help and the keyboard. Their listeners go through viewer.listen(), so
// the viewer's destroy() removes them.
import { Enums as CoreEnums } from "@cornerstonejs/core";

import { HelpOverlay } from "../panels/help";
import { viewerKeydown } from "../panels/keyboard";
import type { ToolMode } from "../tools/toolGroup";
import { WINDOW_PRESETS, type ViewName } from "./scene";
import { $ } from "../panels/dom";
import type { Viewer } from "./viewer";

export class ViewControls {
  private presetIndex = 0;

  constructor(private readonly viewer: Viewer) {}

  /** Read a slider, show its value, and return it (`delta` moves it first). */
  private slider(id: string, unit: (v: number) => string, delta = 0): number {
    const input = $<HTMLInputElement>(`#${id}`);
    if (delta) input.value = String(Number(input.value) + delta);
    const value = Number(input.value);
    $(`#${id}-value`).textContent = unit(value);
    return value;
  }

  brushSize(delta = 0): number {
    const size = this.slider("brush-size", (v) => `${v} mm`, delta);
    this.viewer.tools?.setBrushSize(size);
    return size;
  }

  tolerance(): number {
    return this.slider("grow-tolerance", (v) => `± ${v} HU`);
  }

  growRadius(): number {
    return this.slider("grow-radius", (v) => `${v} mm`);
  }

  private applyPreset(index: number): void {
    this.presetIndex = index;
    this.viewer.scene?.setWindow(WINDOW_PRESETS[index]);
    this.markPreset();
    this.viewer.updateViewerStatus();
  }

  /** Highlight the preset the window shows now; none after a manual window/level change. */
  private markPreset(): void {
    const scene = this.viewer.scene;
    if (!scene) return;
    const { center, width } = scene.currentWindow();
    for (const button of document.querySelectorAll<HTMLButtonElement>("[data-preset]")) {
      const p = WINDOW_PRESETS[Number(button.dataset.preset)];
      const same = Math.abs(p.center - center) < 1 && Math.abs(p.width - width) < 1;
      button.setAttribute("aria-pressed", String(same));
    }
  }

  private async setMpr(on: boolean): Promise<void> {
    const { scene, tools } = this.viewer;
    if (!scene || !tools) return;
    $<HTMLInputElement>("#mpr-toggle").checked = on;
    const grid = $("#viewport-grid");
    grid.classList.toggle("mpr", on);
    for (const view of ["coronal", "sagittal"] as ViewName[]) {
      grid.querySelector<HTMLElement>(`.viewport-cell.${view}`)!.hidden = !on;
      if (on) {
        await scene.enableView(view);
        tools.addViewport(scene.viewportId(view), scene.engine.id);
      } else if (scene.enabledViews().includes(view)) {
        tools.removeViewport(scene.viewportId(view), scene.engine.id);
        scene.disableView(view);
      }
    }
    scene.resize();
    scene.renderAll();
  }

  private toggleLabels(): void {
    const box = $<HTMLInputElement>("#labels-visible");
    box.checked = !box.checked;
    this.viewer.scene?.setLabelmapVisible(box.checked);
  }

  /** The controls both modes share: tools, sliders, display, window presets, help, keys. */
  wire(): void {
    const { viewer } = this;
    const scene = viewer.scene!;
    for (const button of document.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
      viewer.listen(button, "click", () => viewer.setTool(button.dataset.tool as ToolMode));
    }
    viewer.listen($("#brush-size"), "input", () => this.brushSize());
    viewer.listen($("#grow-tolerance"), "input", () => this.tolerance());
    viewer.listen($("#grow-radius"), "input", () => this.growRadius());
    viewer.listen($("#labels-visible"), "change", (evt: Event) =>
      scene.setLabelmapVisible((evt.target as HTMLInputElement).checked),
    );
    viewer.listen($("#labels-opacity"), "input", () =>
      scene.setLabelmapOpacity(this.slider("labels-opacity", (v) => `${v} %`) / 100),
    );
    viewer.listen(
      $("#mpr-toggle"),
      "change",
      (evt: Event) => void this.setMpr((evt.target as HTMLInputElement).checked),
    );
    $("#window-presets").replaceChildren(
      ...WINDOW_PRESETS.map((preset, index) => {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.preset = String(index);
        button.textContent = preset.name;
        button.title = `W ${preset.width} L ${preset.center}`;
        button.setAttribute("aria-pressed", String(index === 0));
        button.addEventListener("click", () => this.applyPreset(index));
        return button;
      }),
    );
    viewer.listen($("#view-axial"), CoreEnums.Events.VOI_MODIFIED, () => this.markPreset());
    viewer.listen($("#reload"), "click", () => {
      viewer.leaving = true;
      window.location.reload();
    });
    const help = new HelpOverlay($("#help"));
    viewer.listen($("#help-button"), "click", () => help.open());
    const keydown = viewerKeydown(
      {
        tool: (mode) => viewer.setTool(mode),
        classIndex: (i) => viewer.classPicker?.selectIndex(i),
        brushSize: (delta) => void this.brushSize(delta),
        nextWindowPreset: () => this.applyPreset((this.presetIndex + 1) % WINDOW_PRESETS.length),
        toggleLabels: () => this.toggleLabels(),
        toggleMpr: () => void this.setMpr(!$<HTMLInputElement>("#mpr-toggle").checked),
        step: (delta) => viewer.step(delta),
        toEnd: (last) => viewer.goToSlice(last ? scene.kToZ.length : 1),
        labelled: (dir) => viewer.goToNearest(viewer.labelledNumbers(), dir, "labelled slice"),
        finding: (dir) => viewer.goToNearest(viewer.findingNumbers(), dir, "finding"),
        toggleMarkers: () => viewer.markers?.toggle(),
        cancel: () => viewer.mode.cancel(),
        undo: () => viewer.mode.undo(),
        redo: () => viewer.mode.redo(),
        save: () => viewer.mode.save(),
      },
      help,
    );
    viewer.listen(document, "keydown", keydown);
  }
}
