/**
 * The open conversation's message list, windowed (issue 15): only a window of at most MAX_ROWS messages
 * is in the DOM, whatever the length of the chat, as Element Web windows its timelines. The window follows
 * the newest message while the person reads there, grows by a page when they scroll near its top or
 * bottom (older or newer messages come in, rows far off the other side go), and keeps what they are
 * reading in place while it changes (its own scroll anchoring: the stylesheet turns the browser's off).
 *
 * Each refresh reconciles the window with the conversation's ordered messages (./chatIndex.ts) by id:
 * a new message is one row appended, a changed tick is one row updated, and at the newest message the
 * list is scrolled once per refresh — the view refreshes at most once per animation frame.
 */
import { countUpTo } from "./chatIndex";
import type { ChatMessage } from "./model";

/** Rows kept while following the newest message. */
export const WINDOW_ROWS = 60;
/** The most rows ever in the DOM. */
export const MAX_ROWS = 150;
/** Rows added when the person scrolls to an edge of the window. */
const PAGE_ROWS = 40;
/** How close to an edge (px) loads the next page. */
const EDGE_PX = 400;
/** How close to the bottom still counts as reading the newest message. */
const NEWEST_SLACK_PX = 48;

export interface RowRenderer {
  create(message: ChatMessage): HTMLLIElement;
  update(row: HTMLLIElement, message: ChatMessage): void;
}

export class Timeline {
  private rows = new Map<string, HTMLLIElement>();
  private source: readonly ChatMessage[] = [];
  private first: ChatMessage | undefined;
  private last: ChatMessage | undefined;
  /** The window ends at the conversation's newest message: what arrives joins it. */
  private followsEnd = true;
  /** The list shows its newest message: it stays there as messages arrive and images load. */
  private atNewest = true;
  /** Where the timeline last scrolled the list itself (that scroll event is not the person's). */
  private autoScrollTop = -1;

  constructor(
    readonly list: HTMLOListElement,
    private readonly renderer: RowRenderer,
  ) {
    list.addEventListener("scroll", () => this.onScroll());
  }

  /** How many rows are in the DOM (for tests and benchmarks). */
  get rowCount(): number {
    return this.rows.size;
  }

  /** A conversation opened (or none): its newest messages, shown at the newest one. */
  show(source: readonly ChatMessage[]): void {
    this.rows.clear();
    this.list.replaceChildren();
    this.source = source;
    this.first = this.last = undefined;
    this.followsEnd = this.atNewest = true;
    this.refresh(source, new Set());
  }

  /** The conversation's messages changed: new ones join the window if it ends at the newest, `changed` rows are redrawn. */
  refresh(source: readonly ChatMessage[], changed: ReadonlySet<string>): void {
    this.source = source;
    let [start, end] = this.bounds();
    if (this.atNewest) start = Math.max(0, end - WINDOW_ROWS);
    else if (end - start > MAX_ROWS) end = start + MAX_ROWS; // reading older messages: the window stops growing
    // Rows come and go only at the end here (or above the window while following the newest): what the
    // person reads does not move, so no layout is read to keep it in place.
    this.place(start, end, false);
    for (const id of changed) {
      const row = this.rows.get(id);
      const message = row ? this.source[this.indexOf(id, row)] : undefined;
      if (row && message) this.renderer.update(row, message);
    }
    this.followNewest();
  }

  /**
   * Brings message `id` into the window (paging it in, however far from the newest it is) and scrolls the
   * list so it sits in the middle; returns its row, or null if the conversation has no such message.
   * The window then stays there, as if the person had scrolled to it, until they scroll back down.
   */
  reveal(id: string): HTMLLIElement | null {
    const at = this.source.findIndex((message) => message.id === id); // once per search result chosen
    if (at < 0) return null;
    const half = WINDOW_ROWS / 2;
    const start = Math.max(0, at - half);
    this.place(start, Math.min(this.source.length, start + WINDOW_ROWS), false);
    this.atNewest = false;
    const row = this.rows.get(id) ?? null;
    if (row) {
      const list = this.list;
      list.scrollTop = row.offsetTop - Math.max(0, (list.clientHeight - row.offsetHeight) / 2);
      this.autoScrollTop = list.scrollTop;
    }
    return row;
  }

  /** Scrolls to the newest message if the person reads there (after an image made a row taller, say). */
  followNewest(): void {
    if (!this.atNewest) return;
    this.list.scrollTop = this.list.scrollHeight;
    this.autoScrollTop = this.list.scrollTop;
  }

  private indexOf(id: string, row: HTMLLIElement): number {
    const ts = Number(row.dataset.ts);
    const at = countUpTo(this.source, ts, id) - 1;
    return this.source[at]?.id === id ? at : -1;
  }

  /** The window's [start, end) in the current source. */
  private bounds(): [number, number] {
    const length = this.source.length;
    const start = this.first ? Math.max(0, countUpTo(this.source, this.first.ts, this.first.id) - 1) : 0;
    const end =
      this.followsEnd || !this.last ? length : Math.min(length, countUpTo(this.source, this.last.ts, this.last.id));
    return [Math.min(start, end), end];
  }

  private onScroll(): void {
    const list = this.list;
    if (list.scrollTop === this.autoScrollTop) return; // our own scroll
    const fromBottom = list.scrollHeight - list.scrollTop - list.clientHeight;
    const [start, end] = this.bounds();
    if (list.scrollTop < EDGE_PX && start > 0) {
      const newStart = Math.max(0, start - PAGE_ROWS);
      this.place(newStart, Math.min(end, newStart + MAX_ROWS), true);
    } else if (fromBottom < EDGE_PX && end < this.source.length) {
      const newEnd = Math.min(this.source.length, end + PAGE_ROWS);
      this.place(Math.max(start, newEnd - MAX_ROWS), newEnd, true);
    }
    this.atNewest = this.followsEnd && list.scrollHeight - list.scrollTop - list.clientHeight < NEWEST_SLACK_PX;
  }

  /** Makes the DOM hold exactly source[start, end), in order, moving as few rows as it can. */
  private place(start: number, end: number, keepInPlace: boolean): void {
    const wanted = this.source.slice(start, end);
    const anchor = keepInPlace ? this.anchor() : undefined;
    const ids = new Set(wanted.map((m) => m.id));
    for (const [id, row] of this.rows) {
      if (!ids.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    let previous: HTMLLIElement | null = null;
    for (const message of wanted) {
      let row = this.rows.get(message.id);
      if (!row) {
        row = this.renderer.create(message);
        row.dataset.ts = String(message.ts);
        this.rows.set(message.id, row);
      }
      const expected: ChildNode | null = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row) this.list.insertBefore(row, expected);
      previous = row;
    }
    this.first = wanted[0];
    this.last = wanted[wanted.length - 1];
    this.followsEnd = end >= this.source.length;
    if (anchor?.row.isConnected) this.list.scrollTop = anchor.row.offsetTop - anchor.offset;
  }

  /** The first row the person sees, and how far below the list's top edge it is. */
  private anchor(): { row: HTMLLIElement; offset: number } | undefined {
    const top = this.list.scrollTop;
    for (const child of this.list.children) {
      const row = child as HTMLLIElement;
      if (row.offsetTop + row.offsetHeight > top) return { row, offset: row.offsetTop - top };
    }
    return undefined;
  }
}
