// Keyboard shortcuts of the viewer (listed in the ? overlay of viewer.html).
import type { ToolMode } from "../tools/toolGroup";
import type { HelpOverlay } from "./help";

export interface ViewerKeys {
  tool(mode: ToolMode): void;
  classIndex(index: number): void;
  brushSize(delta: number): void;
  nextWindowPreset(): void;
  toggleLabels(): void;
  toggleMpr(): void;
  scroll(delta: number): void;
  toEnd(last: boolean): void;
  undo(): void;
  redo(): void;
  save(): void;
}

const isTyping = (target: EventTarget | null) =>
  target instanceof HTMLElement && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName);

export function viewerKeydown(keys: ViewerKeys, help: HelpOverlay): (evt: KeyboardEvent) => void {
  const plain: Record<string, () => void> = {
    b: () => keys.tool("brush"),
    e: () => keys.tool("eraser"),
    g: () => keys.tool("grow"),
    l: () => keys.tool("windowLevel"),
    f: () => keys.tool("finding"),
    w: keys.nextWindowPreset,
    h: keys.toggleLabels,
    m: keys.toggleMpr,
    "[": () => keys.brushSize(-1),
    "]": () => keys.brushSize(1),
    "?": () => help.open(),
    // Up and PageUp go towards the head.
    ArrowUp: () => keys.scroll(-1),
    ArrowLeft: () => keys.scroll(-1),
    ArrowDown: () => keys.scroll(1),
    ArrowRight: () => keys.scroll(1),
    PageUp: () => keys.scroll(-10),
    PageDown: () => keys.scroll(10),
    Home: () => keys.toEnd(false),
    End: () => keys.toEnd(true),
  };
  return (evt: KeyboardEvent) => {
    const key = evt.key;
    const lower = key.toLowerCase();
    const ctrl = evt.ctrlKey || evt.metaKey;
    let action: (() => void) | undefined;
    if (help.isOpen) {
      if (key === "Escape" || key === "?") action = () => help.close();
    } else if (ctrl && lower === "s") {
      action = keys.save;
    } else if (ctrl && (lower === "y" || (lower === "z" && evt.shiftKey))) {
      action = keys.redo;
    } else if (ctrl && lower === "z") {
      action = keys.undo;
    } else if (!ctrl && !evt.altKey && !isTyping(evt.target)) {
      action = plain[key] ?? plain[lower];
      if (!action && /^[1-9]$/.test(key)) action = () => keys.classIndex(Number(key) - 1);
    }
    if (action) {
      evt.preventDefault();
      action();
    }
  };
}
