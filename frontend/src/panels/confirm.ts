// An inline "are you sure?" under a control, for steps that cannot be undone (submitting a scan
// for checking, recording a verdict): asked once, in words that say what will happen.
import { el } from "./dom";

/** Ask `question` after `anchor`; resolves true on `yes`, false on "Not yet" or Esc. */
export function confirmOnce(anchor: HTMLElement, question: string, yes: string): Promise<boolean> {
  anchor.parentElement?.querySelector(".confirm-box")?.remove();
  const yesButton = el("button", { type: "button", className: "primary confirm-yes" }, yes);
  const noButton = el("button", { type: "button", className: "confirm-no" }, "Not yet");
  const box = el(
    "div",
    { className: "notice notice-info confirm-box", attrs: { role: "alertdialog" } },
    el("p", {}, question),
    el("div", { className: "row" }, yesButton, " ", noButton),
  );
  anchor.after(box);
  yesButton.focus();
  return new Promise((resolve) => {
    const done = (answer: boolean) => {
      box.remove();
      resolve(answer);
    };
    yesButton.addEventListener("click", () => done(true));
    noButton.addEventListener("click", () => done(false));
    box.addEventListener("keydown", (evt) => {
      if (evt.key === "Escape") {
        evt.stopPropagation();
        done(false);
      }
    });
  });
}
