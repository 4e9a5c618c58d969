import { describe, expect, test } from "vitest";
import { PRESENCE_ONLINE_MS, TYPING_FRESH_MS } from "../../src/messenger/actions";
import {
  LiveStatus,
  TYPING_IDLE_MS,
  TYPING_REPEAT_MS,
  TYPING_SHOWN_MS,
  TypingSender,
} from "../../src/messenger/liveStatus";

const CHAT = "direct:alice:bob";

describe("TypingSender (messaging.md §15.5)", () => {
  test("composing on the first key, again only every 5 s while typing goes on", () => {
    const typing = new TypingSender();
    expect(typing.input(CHAT, false, 0)).toBe("composing");
    expect(typing.input(CHAT, false, 1_000)).toBeNull();
    expect(typing.input(CHAT, false, TYPING_REPEAT_MS - 1)).toBeNull();
    expect(typing.input(CHAT, false, TYPING_REPEAT_MS)).toBe("composing");
  });

  test("paused once the text is cleared, and nothing more for a chat that was not typing", () => {
    const typing = new TypingSender();
    expect(typing.input(CHAT, true, 0)).toBeNull();
    typing.input(CHAT, false, 0);
    expect(typing.input(CHAT, true, 100)).toBe("paused");
    expect(typing.nextDue()).toBeNull();
  });

  test("paused 5 s after the last key, once; a sent message ends typing with no paused", () => {
    const typing = new TypingSender();
    typing.input(CHAT, false, 0);
    typing.input(CHAT, false, 3_000);
    expect(typing.nextDue()).toBe(3_000 + TYPING_IDLE_MS);
    expect(typing.idle(3_000 + TYPING_IDLE_MS - 1)).toEqual([]);
    expect(typing.idle(3_000 + TYPING_IDLE_MS)).toEqual([CHAT]);
    expect(typing.idle(60_000)).toEqual([]);
    typing.input(CHAT, false, 70_000);
    typing.sent(CHAT);
    expect(typing.nextDue()).toBeNull();
    expect(typing.input(CHAT, false, 70_100)).toBe("composing"); // the next message's typing starts afresh
  });
});

describe("LiveStatus (messaging.md §15.5)", () => {
  test("typing… until paused, a message, or 6 s; a stale signal is not shown", () => {
    const live = new LiveStatus();
    expect(live.noteTyping(CHAT, "alice", "composing", 1_000, 1_000)).toBe(true);
    expect(live.typers(CHAT, 1_000)).toEqual(["alice"]);
    expect(live.noteTyping(CHAT, "alice", "paused", 2_000, 2_000)).toBe(true);
    expect(live.typers(CHAT, 2_000)).toEqual([]);

    live.noteTyping(CHAT, "alice", "composing", 3_000, 3_000);
    expect(live.stopTyping(CHAT, "alice")).toBe(true);
    expect(live.typers(CHAT, 3_000)).toEqual([]);

    live.noteTyping(CHAT, "alice", "composing", 4_000, 4_000);
    expect(live.nextChange(4_000)).toBe(4_000 + TYPING_SHOWN_MS);
    expect(live.typers(CHAT, 4_000 + TYPING_SHOWN_MS - 1)).toEqual(["alice"]);
    expect(live.typers(CHAT, 4_000 + TYPING_SHOWN_MS)).toEqual([]);
    expect(live.nextChange(4_000 + TYPING_SHOWN_MS)).toBeNull();

    expect(live.noteTyping(CHAT, "alice", "composing", 0, TYPING_FRESH_MS + 1)).toBe(false); // waited in a queue
    expect(live.typers(CHAT, TYPING_FRESH_MS + 1)).toEqual([]);
  });

  test("online while the newest signal is online and under 75 s old, else last seen at its time", () => {
    const live = new LiveStatus();
    expect(live.presenceOf("alice", 0)).toBeNull();
    live.notePresence("alice", "online", 10_000);
    expect(live.presenceOf("alice", 10_000 + PRESENCE_ONLINE_MS - 1)).toEqual({ online: true });
    expect(live.nextChange(10_000)).toBe(10_000 + PRESENCE_ONLINE_MS);
    expect(live.presenceOf("alice", 10_000 + PRESENCE_ONLINE_MS)).toEqual({ online: false, lastSeen: 10_000 });
    expect(live.notePresence("alice", "offline", 20_000)).toBe(true);
    expect(live.presenceOf("alice", 20_001)).toEqual({ online: false, lastSeen: 20_000 });
    // An older signal arriving late changes nothing.
    expect(live.notePresence("alice", "online", 15_000)).toBe(false);
    expect(live.presenceOf("alice", 20_001)).toEqual({ online: false, lastSeen: 20_000 });
    live.forgetPresence();
    expect(live.presenceOf("alice", 20_001)).toBeNull();
  });
});
