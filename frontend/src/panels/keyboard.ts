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
  /** Slices on: positive = next = towards the feet. */
  step(delta: number): void;
  /** Home (first = top slice) or End (last = bottom slice). */
  toEnd(last: boolean): void;
  /** Next (1) / previous (-1) slice that holds labels. */
  labelled(dir: 1 | -1): void;
  /** Next (1) / previous (-1) slice with a finding. */
  finding(dir: 1 | -1): void;
  toggleMarkers(): void;
  /** Esc: cancel an armed finding placement. */
  cancel(): boolean;
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
    r: () => keys.tool("relabel"),
    x: () => keys.tool("remove"),
    l: () => keys.tool("windowLevel"),
    f: () => keys.tool("finding"),
    w: keys.nextWindowPreset,
    h: keys.toggleLabels,
    m: keys.toggleMpr,
    "[": () => keys.brushSize(-1),
    "]": () => keys.brushSize(1),
    "?": () => help.open(),
    o: keys.toggleMarkers,
    // Slices count from the top as in PACS viewers: Up / PageUp / Home go towards the head,
    // Down / PageDown / End towards the feet (next).
    ArrowUp: () => keys.step(-1),
    ArrowLeft: () => keys.step(-1),
    ArrowDown: () => keys.step(1),
    ArrowRight: () => keys.step(1),
    PageUp: () => keys.step(-10),
    PageDown: () => keys.step(10),
    ".": () => keys.labelled(1),
    ",": () => keys.labelled(-1),
    n: () => keys.finding(1),
    p: () => keys.finding(-1),
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
    } else if (key === "Escape") {
      if (keys.cancel()) evt.preventDefault();
      return;
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
