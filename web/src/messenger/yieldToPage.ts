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
