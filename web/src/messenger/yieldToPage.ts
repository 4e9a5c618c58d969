/**
 * Lets the page paint and handle input between chunks of long work (unsealing a chat's history, a batch of
 * decrypts), so no single task runs past the 50 ms a person notices (issue 15).
 *
 * - "continue" (work the person waits for): `scheduler.yield` where the browser has it, which resumes
 *   ahead of other queued tasks once the page has had its turn;
 * - "background" (work nobody waits for yet): a background-priority task, which runs only when nothing
 *   else is queued — unsealing old chats must not hold up the page read of the chat the person opened.
 *
 * Without the Scheduler API, a message-channel task (not clamped to 4 ms like a nested `setTimeout(0)`).
 */
interface Scheduler {
  yield(): Promise<void>;
  postTask(callback: () => void, options: { priority: "background" }): Promise<void>;
}

export function yieldToPage(priority: "continue" | "background" = "continue"): Promise<void> {
  const scheduler = (globalThis as { scheduler?: Partial<Scheduler> }).scheduler;
  if (priority === "continue" && typeof scheduler?.yield === "function") return scheduler.yield();
  if (priority === "background" && typeof scheduler?.postTask === "function")
    return scheduler.postTask(() => undefined, { priority: "background" });
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/**
 * How long one slice of work the person waits for may run before the page gets a turn (ms). A frame is
 * 16 ms; a slice well under it leaves the page time to draw and a loaded machine room to stretch it
 * without a task passing 50 ms.
 */
export const SLICE_MS = 8;

/**
 * Splits a loop of small awaited steps (decrypting a batch of messages: each step a few WebCrypto calls
 * whose promises resolve within the same task) into slices of about `budgetMs`: `pause()` between steps
 * yields to the page once the slice has used its budget, and is free otherwise.
 */
export class Slicer {
  private started: number;

  constructor(
    private readonly budgetMs = SLICE_MS,
    private readonly now: () => number = () => performance.now(),
    private readonly yieldTo: () => Promise<void> = () => yieldToPage("continue"),
  ) {
    this.started = now();
  }

  /** Whether this slice has used its budget. */
  due(): boolean {
    return this.now() - this.started >= this.budgetMs;
  }

  /** A new slice starts now (after the page had its turn). */
  restart(): void {
    this.started = this.now();
  }

  async pause(): Promise<void> {
    if (!this.due()) return;
    await this.yieldTo();
    this.restart();
  }
}
