// Mouse bindings and the editing tool of the viewer.
//   left drag: the current tool (brush, eraser, window/level; grow, relabel and remove are clicks)
//   shift + left drag: window/level · middle drag: pan · right drag: zoom · wheel: slices
//   alt + wheel with the grow tool: widen / narrow the last grow (tools/regionGrow.ts)
import {
  Enums as ToolEnums,
  ToolGroupManager,
  utilities as toolUtils,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";
import {
  BrushTool,
  PanTool,
  StackScrollTool,
  WindowLevelTool,
  ZoomTool,
} from "@cornerstonejs/tools";

import { maskedFillInsideCircle } from "./lungMask";

export type ToolMode =
  "brush" | "eraser" | "grow" | "relabel" | "remove" | "windowLevel" | "finding";

const BRUSH = "CurateBrush";
const ERASER = "CurateEraser";
const { MouseBindings, KeyboardBindings } = ToolEnums;

const PRIMARY_TOOL: Record<ToolMode, string | null> = {
  brush: BRUSH,
  eraser: ERASER,
  grow: null, // the region-growing brush is a click, handled by tools/regionGrow.ts
  relabel: null, // a click too: tools/relabel.ts
  remove: null, // relabel to background: tools/relabel.ts
  windowLevel: WindowLevelTool.toolName,
  finding: null, // a reviewer's finding is a click, handled by panels/review.ts
};

export class ViewerTools {
  readonly group: ToolTypes.IToolGroup;
  mode: ToolMode = "windowLevel";

  constructor(readonly id: string) {
    const group = ToolGroupManager.createToolGroup(id);
    if (!group) throw new Error(`tool group ${id} exists already`);
    this.group = group;
    // Cornerstone re-renders every viewport of the group (CT and labelmap, 0.2–0.8 s each
    // under software WebGL) at each tool mode change, though a mode only changes what the SVG
    // layer draws (the brush circle, cursors). Redraw that layer only: a tool switch costs a
    // frame, not a render (issue #17 §6; cornerstone3D #2141, #2614).
    (group as unknown as { _renderViewports(): void })._renderViewports = () =>
      toolUtils.triggerAnnotationRenderForViewportIds(group.getViewportIds());
    group.addTool(WindowLevelTool.toolName);
    group.addTool(PanTool.toolName);
    group.addTool(ZoomTool.toolName);
    group.addTool(StackScrollTool.toolName);
    // The brush's circle fill obeys "paint inside lungs only" (tools/lungMask.ts).
    group.addToolInstance(BRUSH, BrushTool.toolName, {
      activeStrategy: "FILL_INSIDE_CIRCLE",
      strategies: { FILL_INSIDE_CIRCLE: maskedFillInsideCircle },
    });
    group.addToolInstance(ERASER, BrushTool.toolName, { activeStrategy: "ERASE_INSIDE_CIRCLE" });

    group.setToolActive(WindowLevelTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Shift }],
    });
    group.setToolActive(PanTool.toolName, {
      bindings: [
        { mouseButton: MouseBindings.Auxiliary },
        { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl },
      ],
    });
    group.setToolActive(ZoomTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Secondary }],
    });
    group.setToolActive(StackScrollTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Wheel }],
    });
    group.setToolPassive(BRUSH);
    group.setToolPassive(ERASER);
  }

  addViewport(viewportId: string, renderingEngineId: string): void {
    this.group.addViewport(viewportId, renderingEngineId);
  }

  removeViewport(viewportId: string, renderingEngineId: string): void {
    this.group.removeViewports(renderingEngineId, viewportId);
  }

  setMode(mode: ToolMode): void {
    const previous = PRIMARY_TOOL[this.mode];
    if (previous) this.group.setToolPassive(previous);
    this.mode = mode;
    const next = PRIMARY_TOOL[mode];
    if (next)
      this.group.setToolActive(next, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  }

  /** Disable editing (read-only annotation): only viewing tools stay. */
  setReadOnly(): void {
    this.setMode("windowLevel");
    this.group.setToolDisabled(BRUSH);
    this.group.setToolDisabled(ERASER);
  }

  setBrushSize(radiusMm: number): void {
    toolUtils.segmentation.setBrushSizeForToolGroup(this.id, radiusMm);
  }

  destroy(): void {
    ToolGroupManager.destroyToolGroup(this.id);
  }
}
