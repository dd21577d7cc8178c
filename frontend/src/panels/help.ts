// The keyboard-shortcut overlay (?): a modal dialog that returns focus where it came from.
export class HelpOverlay {
  private returnFocus: HTMLElement | null = null;

  constructor(private readonly dialog: HTMLElement) {
    dialog.querySelector("#help-close")?.addEventListener("click", () => this.close());
    dialog.addEventListener("click", (evt) => {
      if (evt.target === dialog) this.close();
    });
  }

  get isOpen(): boolean {
    return !this.dialog.hidden;
  }

  open(): void {
    this.returnFocus = document.activeElement as HTMLElement | null;
    this.dialog.hidden = false;
    this.dialog.querySelector<HTMLElement>("#help-close")?.focus();
  }

  close(): void {
    this.dialog.hidden = true;
    this.returnFocus?.focus();
  }

  toggle(): void {
    if (this.isOpen) this.close();
    else this.open();
  }
}
