// Scan-level labels (campaign.label_schema.scan_labels): one select per field.
import type { ScanLabelField } from "../api/types";

export class ScanLabelsPanel {
  private selects = new Map<string, HTMLSelectElement>();

  constructor(
    root: HTMLElement,
    private readonly fields: ScanLabelField[],
    onChange: () => void,
  ) {
    if (!fields.length) {
      root.innerHTML = '<p class="muted">This campaign has no scan-level labels.</p>';
      return;
    }
    root.replaceChildren(
      ...fields.map((field) => {
        const id = `scan-label-${field.key}`;
        const wrapper = document.createElement("div");
        wrapper.className = "field";
        const label = document.createElement("label");
        label.htmlFor = id;
        label.textContent = field.name + (field.required === false ? "" : " *");
        const select = document.createElement("select");
        select.id = id;
        select.required = field.required !== false;
        const empty = new Option("— choose —", "");
        select.append(empty, ...field.choices.map((choice) => new Option(choice, choice)));
        select.addEventListener("change", onChange);
        this.selects.set(field.key, select);
        wrapper.append(label, select);
        return wrapper;
      }),
    );
  }

  get values(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, select] of this.selects) if (select.value) out[key] = select.value;
    return out;
  }

  set values(values: Record<string, string>) {
    for (const [key, select] of this.selects) select.value = values[key] ?? "";
  }

  /** Names of required labels still unset. */
  missing(): string[] {
    return this.fields
      .filter((f) => f.required !== false && !this.selects.get(f.key)?.value)
      .map((f) => f.name);
  }

  setDisabled(disabled: boolean): void {
    for (const select of this.selects.values()) select.disabled = disabled;
  }
}
