/** Stand-ins for the browser's I/O in the unit tests: a scripted socket, a manual clock, a memory store. */
import { b64uEncode } from "../../src/crypto/base64";
import type { Hello } from "../../src/net/events";
import type { Clock } from "../../src/net/reconnecting";
import type { ServerEvent, SocketHandlers } from "../../src/net/socket";

export const ORIGIN = "https://lockstep.test";

type Reply = (fields: Record<string, unknown>) => Record<string, unknown> | Promise<Record<string, unknown>>;

/** A socket whose replies the test scripts (`on`), and whose events and close the test sends. */
export class FakeSocket {
  readonly hello: Hello = {
    event: "hello",
    server: { origin: ORIGIN, name: "test", version: "0" },
    challenge: b64uEncode(new Uint8Array(32).fill(7)),
    server_time: 1_000_000,
  };
  isOpen = true;
  closedByPage = false;
  readonly requests: { op: string; fields: Record<string, unknown> }[] = [];
  private readonly replies = new Map<string, Reply>();

  constructor(private readonly handlers: SocketHandlers) {}

  on(op: string, reply: Reply): this {
    this.replies.set(op, reply);
    return this;
  }

  ops(): string[] {
    return this.requests.map((r) => r.op);
  }

  request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    this.requests.push({ op, fields });
    const reply = this.replies.get(op);
    return reply ? Promise.resolve(reply(fields)) : Promise.resolve({});
  }

  serverNow(): number {
    return 1_000_000;
  }

  close(): void {
    this.isOpen = false;
    this.closedByPage = true;
  }

  /** The server pushes an event. */
  send(event: ServerEvent): void {
    this.handlers.onEvent?.(event);
  }

  /** The server (or the network) closes the socket. */
  drop(code = 1006): void {
    this.isOpen = false;
    this.handlers.onClose?.(code, "");
  }
}

/** Opens FakeSockets (each scripted by `script` first) and keeps them, newest last. */
export class FakeServer {
  readonly sockets: FakeSocket[] = [];
  reachable = true;

  constructor(private readonly script: (socket: FakeSocket) => void = () => undefined) {}

  readonly open = (handlers: SocketHandlers): Promise<FakeSocket> => {
    if (!this.reachable) return Promise.reject(new Error("unreachable"));
    const socket = new FakeSocket(handlers);
    this.script(socket);
    this.sockets.push(socket);
    return Promise.resolve(socket);
  };

  get last(): FakeSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error("no socket was opened");
    return socket;
  }
}

/** Timers that fire only when the test says; `random` is fixed. */
export class ManualClock implements Clock {
  readonly timers = new Map<number, { callback: () => void; ms: number }>();
  private next = 1;

  constructor(private readonly fixedRandom = 0.5) {}

  setTimeout(callback: () => void, ms: number): number {
    const id = this.next++;
    this.timers.set(id, { callback, ms });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  random(): number {
    return this.fixedRandom;
  }

  /** The delays of the timers waiting now. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }

  /** Fires every waiting timer once. */
  fire(): void {
    const due = [...this.timers.values()];
    this.timers.clear();
    for (const timer of due) timer.callback();
  }
}

export class MemoryStore<T> {
  value: T | undefined;
  saves = 0;

  load(): Promise<T | undefined> {
    return Promise.resolve(this.value);
  }

  save(value: T): Promise<void> {
    this.value = value;
    this.saves += 1;
    return Promise.resolve();
  }

  wipe(): Promise<void> {
    this.value = undefined;
    return Promise.resolve();
  }
}
