/**
 * An attachment before it is sent: a preview (the picture itself, or the file's name and size) with a
 * caption field, Send and Cancel, as in WhatsApp. A file comes from the attach button, from dropping it
 * on the conversation, or from pasting a picture into the composer (the computer's clipboard). Nothing
 * is uploaded until Send.
 */
import { el, hide, show, unkeptForm } from "../ui/dom";
import { formatBytes } from "./media";

export class AttachmentDraft {
  readonly root: HTMLElement;
  private readonly preview: HTMLElement;
  private readonly caption: HTMLInputElement;
  private readonly sendButton: HTMLButtonElement;
  private file: File | null = null;
  private url: string | null = null;

  /** `send` uploads the file with its caption (the view shows progress and errors). */
  constructor(private readonly send: (file: File, caption: string) => Promise<void>) {
    this.preview = el("div", { className: "draft-preview" });
    this.caption = el("input", {
      testid: "draft-caption",
      attrs: { type: "text", placeholder: "Add a caption", "aria-label": "Caption", maxlength: "4000" },
    });
    const cancel = el("button", { text: "Cancel", testid: "draft-cancel", attrs: { type: "button" } });
    this.sendButton = el("button", {
      className: "primary",
      text: "Send",
      testid: "draft-send",
      attrs: { type: "submit" },
    });
    const form = unkeptForm(
      { className: "draft-form" },
      this.caption,
      el("div", { className: "row draft-actions" }, cancel, this.sendButton),
    );
    this.root = el(
      "section",
      { className: "draft", testid: "attachment-draft", attrs: { role: "dialog", "aria-label": "Send a file" } },
      this.preview,
      form,
    );
    hide(this.root);
    cancel.addEventListener("click", () => this.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.submit();
    });
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close();
      }
    });
  }

  get open(): boolean {
    return this.file !== null;
  }

  /** Shows `file` for a caption; `caption` is what the composer held (it moves here). */
  offer(file: File, caption = ""): void {
    this.close();
    this.file = file;
    const isImage = file.type.startsWith("image/");
    if (isImage) {
      this.url = URL.createObjectURL(file);
      this.preview.replaceChildren(
        el("img", { testid: "draft-image", attrs: { src: this.url, alt: `Preview of ${file.name || "the picture"}` } }),
      );
    } else {
      this.preview.replaceChildren(
        el("div", {
          className: "draft-file",
          testid: "draft-file",
          text: `📎 ${file.name || "file"} · ${formatBytes(file.size)}`,
        }),
      );
    }
    this.caption.value = caption;
    show(this.root);
    this.caption.focus();
  }

  close(): void {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.file = null;
    this.preview.replaceChildren();
    this.caption.value = "";
    this.sendButton.disabled = false;
    hide(this.root);
  }

  private async submit(): Promise<void> {
    const file = this.file;
    if (!file) return;
    const caption = this.caption.value.trim();
    this.sendButton.disabled = true;
    this.close();
    await this.send(file, caption);
  }
}

/** The first file of a drop or paste, if any (a pasted picture has no name: give it one). */
export function fileFrom(data: DataTransfer | null): File | null {
  const file = data?.files[0];
  if (!file) return null;
  if (file.name) return file;
  const extension = file.type.split("/")[1] ?? "bin";
  return new File([file], `pasted.${extension}`, { type: file.type });
}

/**
 * Drag and drop onto `zone` and pasting a picture into `composer` offer the file to the draft, while
 * `enabled()` (a chat is open and may be written to). The zone shows a "drop to send" outline.
 */
export function acceptDropAndPaste(
  zone: HTMLElement,
  composer: HTMLTextAreaElement,
  enabled: () => boolean,
  offer: (file: File) => void,
): void {
  const carriesFiles = (event: DragEvent): boolean =>
    enabled() && (event.dataTransfer?.types.includes("Files") ?? false);
  zone.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault(); // allows the drop
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dropping");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget as Node | null)) zone.classList.remove("dropping");
  });
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("dropping");
    if (!enabled()) return;
    const file = fileFrom(event.dataTransfer);
    if (!file) return;
    event.preventDefault();
    offer(file);
  });
  composer.addEventListener("paste", (event) => {
    if (!enabled()) return;
    const file = fileFrom(event.clipboardData);
    if (!file || !file.type.startsWith("image/")) return; // text pastes as text
    event.preventDefault();
    offer(file);
  });
}
