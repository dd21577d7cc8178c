// Undo/redo: one history for brush strokes (Cornerstone records those itself) and the
// region-growing brush (which pushes its own memo).
import { utilities as csUtils } from "@cornerstonejs/core";

type Memo = { restoreMemo: (undo?: boolean) => void; id?: string; operationType?: string };

const history = () => csUtils.HistoryMemo.DefaultHistoryMemo;

export const History = {
  push(memo: Memo): void {
    history().push(memo);
  },
  undo(): void {
    if (history().canUndo) history().undo();
  },
  redo(): void {
    if (history().canRedo) history().redo();
  },
  get canUndo(): boolean {
    return history().canUndo;
  },
  get canRedo(): boolean {
    return history().canRedo;
  },
};
