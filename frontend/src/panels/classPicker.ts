// Class picker: one radio per class of the campaign schema, in its colour; keys 1–9.
import type { LabelClass } from "../api/types";

export class ClassPicker {
  private value: number;

  constructor(
    private readonly root: HTMLElement,
    private readonly classes: LabelClass[],
    private readonly onChange: (value: number) => void,
  ) {
    this.value = classes[0]?.value ?? 1;
    root.replaceChildren(
      ...classes.map((c, index) => {
        const label = document.createElement("label");
        label.className = "class-option";
        const input = document.createElement("input");
        input.type = "radio";
        input.name = "label-class";
        input.value = String(c.value);
        input.checked = c.value === this.value;
        input.addEventListener("change", () => this.select(c.value));
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = c.color;
        swatch.setAttribute("aria-hidden", "true");
        const text = document.createElement("span");
        text.textContent = c.name;
        const key = document.createElement("kbd");
        key.textContent = index < 9 ? String(index + 1) : "";
        label.append(input, swatch, text, key);
        return label;
      }),
    );
  }

  get current(): number {
    return this.value;
  }

  get currentClass(): LabelClass | undefined {
    return this.classes.find((c) => c.value === this.value);
  }

  /** Select by position (0-based) as the number keys do. */
  selectIndex(index: number): void {
    const c = this.classes[index];
    if (c) this.select(c.value);
  }

  select(value: number): void {
    this.value = value;
    for (const input of this.root.querySelectorAll<HTMLInputElement>("input[type=radio]")) {
      input.checked = Number(input.value) === value;
    }
    this.onChange(value);
  }
}
