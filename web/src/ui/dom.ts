import { CLOCK_WARNING_MS, describeOffset } from "../net/timesync";

/** Tiny DOM helpers: look up by data-testid, show/hide, and text-only rendering (never innerHTML). */

// The caller names the element type it expects.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export function byTestId<T extends HTMLElement = HTMLElement>(id: string, root: ParentNode = document): T {
  const element = root.querySelector<T>(`[data-testid="${id}"]`);
  if (!element) throw new Error(`missing element ${id}`);
  return element;
}

export function show(element: HTMLElement, visible = true): void {
  // Views call this on every redraw: an unchanged element is not touched (setting `hidden` again still
  // makes the browser check the styles that depend on it).
  if (element.hidden === visible) element.hidden = !visible;
}

export function hide(element: HTMLElement): void {
  element.hidden = true;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string; testid?: string; attrs?: Record<string, string> } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.className) element.className = props.className;
  if (props.text !== undefined) element.textContent = props.text;
  if (props.testid) element.dataset.testid = props.testid;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  for (const child of children) element.append(child);
  return element;
}

/**
 * A form whose fields the browser must not keep. Chromium keeps a page's field values in the tab's
 * session history (for session restore and Back) and writes them to the profile's Sessions/ files about
 * a second after each change and whenever the page is left: without this, everything a person typed in
 * the composer reached the disk in the clear. `autocomplete="off"` stops that (and autofill's saving).
 * Every form where a person types message text, a caption, a group name or handles is one (SECURITY.md,
 * "Data at rest on devices").
 */
export function unkeptForm(props: Parameters<typeof el>[1] = {}, ...children: (Node | string)[]): HTMLFormElement {
  return el("form", { ...props, attrs: { ...props.attrs, autocomplete: "off" } }, ...children);
}

/** Shows a transient notice (aria-live) for `ms`. */
export function flashNotice(element: HTMLElement, text: string, ms = 8000): void {
  element.textContent = text;
  element.hidden = false;
  const token = String(Date.now() + Math.random());
  element.dataset.token = token;
  setTimeout(() => {
    if (element.dataset.token === token) element.hidden = true;
  }, ms);
}

export function formatTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatAgo(ms: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 60) return seconds <= 1 ? "just now" : `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return formatTime(ms);
}

/**
 * After the socket measured the server's clock, warn when ours is far off
 * (brief: "a device whose clock is far off is told so").
 */
export async function checkClock(
  socket: { syncClock(): Promise<{ offset: number } | null> },
  banner: HTMLElement,
): Promise<void> {
  const sample = await socket.syncClock();
  if (sample && Math.abs(sample.offset) > CLOCK_WARNING_MS) {
    banner.textContent = describeOffset(sample.offset);
    banner.hidden = false;
  } else if (sample) {
    banner.hidden = true;
  }
}
