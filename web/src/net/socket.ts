/**
 * The app's WebSocket (linking.md §7): JSON request/reply frames with integer ids, plus server events.
 *
 *   const socket = await LockstepSocket.open(url, { onEvent, onClose });
 *   socket.hello            // { server: { origin, … }, challenge, server_time }
 *   await socket.request("link.start", { client: "browser" })   // result, or throws ServerError
 *
 * Events are checked against their shapes (./events.ts); an unknown or malformed one is dropped.
 *
 * Errors: ServerError (the server replied ok:false; carries .code, ./errorCodes.ts),
 * ProtocolError (a frame we cannot use),
 * SocketClosed (the socket closed before a reply).
 */

import { type ReceivedCode, UNRECOGNISED, isErrorCode } from "./errorCodes";
import { type Hello, type ServerEvent, parseServerEvent } from "./events";
import { type TimeSample, bestSample, localNow, onWire } from "./timesync";

export type { ServerEvent } from "./events";

/** The close code of a socket whose device was unlinked (server/connection.py CLOSE_UNLINKED, linking.md §7.3). */
export const CLOSE_UNLINKED = 4001;

export class ServerError extends Error {
  override name = "ServerError";
  /** One of ERROR_CODES, or UNRECOGNISED for a code this app does not know (see `received`). */
  readonly code: ReceivedCode;
  /** The code exactly as the server sent it. */
  readonly received: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = isErrorCode(code) ? code : UNRECOGNISED;
    this.received = code;
  }
}
export class ProtocolError extends Error {
  override name = "ProtocolError";
}
export class SocketClosed extends Error {
  override name = "SocketClosed";
  constructor(readonly closeCode: number) {
    super(`connection closed (${closeCode})`);
  }
}

export interface SocketHandlers {
  onEvent?: (event: ServerEvent) => void;
  onClose?: (code: number, reason: string) => void;
}

type Pending = { resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void };

/** ws(s)://host/ws for the page's own origin. */
export function defaultSocketUrl(): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class LockstepSocket {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private closed = false;
  /** Server clock minus ours (ms): first from hello's server_time, then from time.sync (see syncClock). */
  clockOffset = 0;
  /** The time.sync sample in use, once there is one. */
  clockSample: TimeSample | null = null;

  private constructor(
    private ws: WebSocket,
    readonly hello: Hello,
    private handlers: SocketHandlers,
  ) {}

  static open(url: string, handlers: SocketHandlers, timeoutMs = 10000): Promise<LockstepSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      let socket: LockstepSocket | null = null;
      const timer = setTimeout(() => {
        ws.close();
        reject(new SocketClosed(1006));
      }, timeoutMs);
      ws.onmessage = (message) => {
        const frame = parseFrame(message.data);
        if (socket) {
          socket.dispatch(frame);
          return;
        }
        const hello = frame && parseServerEvent(frame);
        if (hello?.event === "hello") {
          clearTimeout(timer);
          socket = new LockstepSocket(ws, hello, handlers);
          socket.observeServerTime(hello.server_time);
          resolve(socket);
        }
      };
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (socket) socket.closedBy(event.code, event.reason);
        else reject(new SocketClosed(event.code));
      };
      ws.onerror = () => {
        /* onclose follows */
      };
    });
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Server time now, in ms, by our clock corrected with the measured offset. */
  serverNow(): number {
    return Math.round(localNow() + this.clockOffset);
  }

  /** A coarse estimate (ignores network delay), used only until time.sync has answered. */
  observeServerTime(serverTime: unknown): void {
    if (this.clockSample === null && typeof serverTime === "number" && Number.isFinite(serverTime))
      this.clockOffset = serverTime - localNow();
  }

  /** Measures the offset to the server's clock with `rounds` time.sync exchanges; keeps the least-delay one. */
  async syncClock(rounds = 4): Promise<TimeSample | null> {
    const samples: TimeSample[] = [];
    for (let i = 0; i < rounds && this.isOpen; i++) {
      const t1 = localNow();
      let result: Record<string, unknown>;
      try {
        result = await this.request("time.sync", { t1 });
      } catch {
        break; // an older server without time.sync, or the socket closed: keep the coarse estimate
      }
      const t4 = localNow();
      if (result.t1 !== t1 || typeof result.t2 !== "number" || typeof result.t3 !== "number") continue;
      samples.push(onWire(t1, result.t2, result.t3, t4));
    }
    const best = bestSample(samples);
    if (best) {
      this.clockSample = best;
      this.clockOffset = best.offset;
    }
    return best;
  }

  request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (!this.isOpen) return Promise.reject(new SocketClosed(1006));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...fields, id, op }));
    });
  }

  close(code = 1000): void {
    this.closed = true;
    this.ws.close(code);
  }

  private dispatch(frame: Record<string, unknown> | null): void {
    if (!frame) return; // not JSON: ignore (never crash on server garbage)
    if (typeof frame.id === "number") {
      const pending = this.pending.get(frame.id);
      if (!pending) return;
      this.pending.delete(frame.id);
      if (frame.ok === true && typeof frame.result === "object" && frame.result !== null) {
        pending.resolve(frame.result as Record<string, unknown>);
      } else if (frame.ok === false) {
        const error = (frame.error ?? {}) as Record<string, unknown>;
        pending.reject(
          new ServerError(
            typeof error.code === "string" ? error.code : "unknown",
            typeof error.message === "string" ? error.message : "",
          ),
        );
      } else {
        pending.reject(new ProtocolError("reply without ok/result"));
      }
      return;
    }
    const event = parseServerEvent(frame);
    if (event) {
      if ("server_time" in event) this.observeServerTime(event.server_time);
      this.handlers.onEvent?.(event);
    }
  }

  private closedBy(code: number, reason: string): void {
    this.closed = true;
    for (const pending of this.pending.values()) pending.reject(new SocketClosed(code));
    this.pending.clear();
    this.handlers.onClose?.(code, reason);
  }
}

function parseFrame(data: unknown): Record<string, unknown> | null {
  if (typeof data !== "string") return null;
  try {
    const value: unknown = JSON.parse(data);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
