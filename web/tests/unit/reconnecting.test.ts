import { describe, expect, test, vi } from "vitest";
import { BACKOFF, ReconnectingSocket, backoffDelay } from "../../src/net/reconnecting";
import type { SocketHandlers } from "../../src/net/socket";
import { FakeServer, FakeSocket, ManualClock } from "./fakes";

function watcher(reconnect = true) {
  const seen = { opened: 0, events: 0, closed: [] as number[], unreachable: 0 };
  const handlers = {
    opened: () => {
      seen.opened += 1;
    },
    event: () => {
      seen.events += 1;
    },
    closed: (code: number) => {
      seen.closed.push(code);
      return reconnect;
    },
    unreachable: () => {
      seen.unreachable += 1;
    },
  };
  return { seen, handlers };
}

describe("backoffDelay", () => {
  test("doubles from 0.5 s up to 10 s, each within ±25 %", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, 0.5))).toEqual([
      500, 1000, 2000, 4000, 8000, 10_000, 10_000,
    ]);
    expect(backoffDelay(0, 0)).toBe(375);
    expect(backoffDelay(5, 0.999_999)).toBeLessThan(12_500);
    expect(backoffDelay(5, 0.999_999)).toBeGreaterThan(12_499);
    expect(BACKOFF.jitter).toBe(0.25);
  });
});

describe("ReconnectingSocket", () => {
  test("reconnects after a close, backing off until the server serves it again", async () => {
    const server = new FakeServer();
    const clock = new ManualClock();
    const { seen, handlers } = watcher();
    const connection = new ReconnectingSocket(server.open, handlers, clock);
    await connection.connect();
    expect(seen.opened).toBe(1);
    expect(connection.current).toBe(server.last);

    server.last.drop(1001);
    expect(seen.closed).toEqual([1001]);
    expect(connection.current).toBeNull();
    expect(clock.pending()).toEqual([500]);

    server.reachable = false;
    clock.fire();
    await vi.waitFor(() => {
      expect(seen.unreachable).toBe(1);
    });
    expect(clock.pending()).toEqual([1000]);

    server.reachable = true;
    clock.fire();
    await vi.waitFor(() => {
      expect(seen.opened).toBe(2);
    });
    connection.served();
    server.last.drop();
    expect(clock.pending()).toEqual([500]);
  });

  test("a close the page does not want to recover from schedules nothing", async () => {
    const server = new FakeServer();
    const clock = new ManualClock();
    const { handlers } = watcher(false);
    const connection = new ReconnectingSocket(server.open, handlers, clock);
    await connection.connect();
    server.last.drop();
    expect(clock.pending()).toEqual([]);
  });

  test("events and closes of a replaced socket are dropped", async () => {
    const server = new FakeServer();
    const { seen, handlers } = watcher();
    const connection = new ReconnectingSocket(server.open, handlers, new ManualClock());
    await connection.connect();
    const old = server.last;
    await connection.connect();
    expect(old.closedByPage).toBe(true);
    old.send({ event: "link.scanned" });
    old.drop();
    expect(seen.events).toBe(0);
    expect(seen.closed).toEqual([]);
    server.last.send({ event: "link.scanned" });
    expect(seen.events).toBe(1);
  });

  test("a socket that opens after a newer connect is closed at once", async () => {
    const late: { resolve?: (socket: FakeSocket) => void; socket?: FakeSocket } = {};
    const server = new FakeServer();
    let calls = 0;
    const open = (handlers: SocketHandlers): Promise<FakeSocket> => {
      calls += 1;
      if (calls > 1) return server.open(handlers);
      late.socket = new FakeSocket(handlers);
      return new Promise((resolve) => (late.resolve = resolve));
    };
    const { seen, handlers } = watcher();
    const connection = new ReconnectingSocket(open, handlers, new ManualClock());
    const first = connection.connect();
    await connection.connect();
    late.resolve?.(late.socket as FakeSocket);
    await first;
    expect(late.socket?.closedByPage).toBe(true);
    expect(connection.current).toBe(server.last);
    expect(seen.opened).toBe(1);
  });

  test("drop closes without reporting it, stop also cancels the retry", async () => {
    const server = new FakeServer();
    const clock = new ManualClock();
    const { seen, handlers } = watcher();
    const connection = new ReconnectingSocket(server.open, handlers, clock);
    await connection.connect();
    connection.drop();
    expect(server.last.closedByPage).toBe(true);
    expect(connection.current).toBeNull();
    connection.retry();
    expect(clock.pending()).toHaveLength(1);
    connection.stop();
    expect(clock.pending()).toEqual([]);
    connection.retry();
    expect(clock.pending()).toEqual([]);
    expect(seen.closed).toEqual([]);
  });
});
