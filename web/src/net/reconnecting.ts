/**
 * One connection to the server that comes back by itself, for both pages: after a failed open, or a close
 * the page wants to recover from, a new socket follows after an exponential, jittered delay (0.5 s doubling
 * up to 10 s, each ±25 %, so that a restarted server is not met by every page at the same instant).
 *
 * The stale-socket guard: each `connect` starts a new generation; events and closes of a socket from an
 * older generation are dropped, and a socket that opens after it was no longer wanted is closed at once.
 * `drop` ends the current socket the same way (its close is not reported), `stop` also cancels retries.
 *
 * DOM-free: tests give it a fake `open` and fake timers.
 */
import type { ServerEvent, SocketHandlers } from "./socket";

/** What a page needs of a socket here (LockstepSocket has it). */
export interface Closable {
  close(): void;
}

export interface ConnectionHandlers<S> {
  /** A new socket is open (not signed in yet). */
  opened(socket: S): void | Promise<void>;
  /** An event on the current socket. */
  event(event: ServerEvent): void;
  /** The current socket closed: return true to open another after the backoff delay. */
  closed(code: number): boolean;
  /** A socket could not be opened: another attempt follows after the backoff delay. */
  unreachable(): void;
}

export interface Backoff {
  firstMs: number;
  maxMs: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter). */
  jitter: number;
}

export const BACKOFF: Backoff = { firstMs: 500, maxMs: 10_000, jitter: 0.25 };

/** The delay before attempt `attempt` (0, 1, …), given a random number in [0, 1). */
export function backoffDelay(attempt: number, random: number, backoff: Backoff = BACKOFF): number {
  const base = Math.min(backoff.maxMs, backoff.firstMs * 2 ** attempt);
  return base * (1 - backoff.jitter + 2 * backoff.jitter * random);
}

export interface Clock {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

const realClock: Clock = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
  random: () => Math.random(),
};

export class ReconnectingSocket<S extends Closable> {
  private socket: S | null = null;
  private generation = 0;
  private attempts = 0;
  private timer: unknown = undefined;
  private stopped = false;

  constructor(
    private readonly open: (handlers: SocketHandlers) => Promise<S>,
    private readonly handlers: ConnectionHandlers<S>,
    private readonly clock: Clock = realClock,
  ) {}

  /** The open socket, or null between sockets. */
  get current(): S | null {
    return this.socket;
  }

  /** Opens a socket now: a pending retry is cancelled, and the current socket (or one still opening) is
   * stale from now on. */
  async connect(): Promise<void> {
    this.stopped = false;
    this.clock.clearTimeout(this.timer);
    this.drop();
    const mine = this.generation;
    let opened: S;
    try {
      opened = await this.open({
        onEvent: (event) => {
          if (mine === this.generation) this.handlers.event(event);
        },
        onClose: (code) => {
          if (mine === this.generation) this.onClosed(code);
        },
      });
    } catch {
      if (mine !== this.generation) return;
      this.handlers.unreachable();
      this.retry();
      return;
    }
    if (mine !== this.generation) {
      opened.close();
      return;
    }
    this.socket = opened;
    await this.handlers.opened(opened);
  }

  /** Another `connect` after the backoff delay (unless stopped). */
  retry(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempts, this.clock.random());
    this.attempts += 1;
    this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => void this.connect(), delay);
  }

  /** The server really served this connection: the next retry backs off from the start again. */
  served(): void {
    this.attempts = 0;
  }

  /** Closes the current socket as stale: its close is not reported, and nothing reconnects by itself. */
  drop(): void {
    this.generation += 1;
    const old = this.socket;
    this.socket = null;
    old?.close();
  }

  /** No socket and no retry until the next `connect`. */
  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.drop();
  }

  private onClosed(code: number): void {
    this.socket = null;
    if (this.handlers.closed(code)) this.retry();
  }
}
