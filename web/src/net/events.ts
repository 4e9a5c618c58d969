/**
 * The events the server pushes over /ws (linking.md §7.1, §7.3; messaging.md §7.2, §7.5): the TypeScript
 * twin of src/lockstep/server/events.py, as one checked shape per event name.
 *
 *   const event = parseServerEvent(frame);   // a ServerEvent, or null for an unknown or malformed frame
 *   if (event?.event === "link.ref") event.expires_at;   // narrowed by the `event` name
 *
 * The types are derived from the checks below, so what the type promises is what was checked.
 * tests/web/test_web_protocol.py feeds every Python event through parseServerEvent and compares the
 * names and fields of both sides.
 */

type Check<T> = (value: unknown) => value is T;
type Checked<C> = C extends Check<infer T> ? T : never;
type Shape = Record<string, Check<unknown>>;
type ShapeOf<S extends Shape> = { [K in keyof S]: Checked<S[K]> };

const string = (value: unknown): value is string => typeof value === "string";
const number = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);
const boolean = (value: unknown): value is boolean => typeof value === "boolean";
const record = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function optional<T>(check: Check<T>): Check<T | undefined> {
  return (value): value is T | undefined => value === undefined || check(value);
}

function nullable<T>(check: Check<T>): Check<T | null> {
  return (value): value is T | null => value === null || check(value);
}

function oneOf<const T extends string>(...values: T[]): Check<T> {
  return (value): value is T => values.includes(value as T);
}

function listOf<T>(check: Check<T>): Check<T[]> {
  return (value): value is T[] => Array.isArray(value) && value.every(check);
}

function shape<S extends Shape>(fields: S): Check<ShapeOf<S>> {
  return (value): value is ShapeOf<S> =>
    record(value) && Object.entries(fields).every(([name, check]) => check(value[name]));
}

/** A signed envelope as it travels (linking.md §4.1); whoever reads it verifies it. */
const envelope = shape({ payload: string, signature: string });

/** Every event, by name: the fields each carries and what each must be. */
const EVENTS = {
  hello: { server: shape({ origin: string, name: string, version: string }), challenge: string, server_time: number },
  "link.ref": { ref: string, issued_at: number, expires_at: number, server_time: number, index: number, last: boolean },
  "link.scanned": {},
  "link.idle": {},
  // An unknown or missing reason reads as a decline (linking.md §7.3).
  "link.declined": { reason: optional(string) },
  "link.granted": { ref: string, enc: string, ciphertext: string },
  // A typed code's CPace messages (linking.md §10.3): the primary's offer to the companion, its answer back.
  "link.code.offer": { sid: string, share: string },
  "link.code.answer": { code_id: string, share: string, sealed: string },
  "devices.changed": {
    device_list: envelope,
    change: shape({
      kind: oneOf("linked", "unlinked", "renamed", "refreshed", "probation_ended"),
      device_id: string,
      name: string,
    }),
  },
  "device.unlinked": { device_id: string },
  message: {
    seq: number,
    message_id: string,
    sender: shape({ account_id: string, device_id: string }),
    group_id: nullable(string),
    payload: record,
    server_time: number,
  },
  "groups.changed": {
    group_id: string,
    created_by: string,
    version: number,
    members: listOf(shape({ account_id: string, role: oneOf("admin", "member") })),
    change: shape({
      kind: oneOf("created", "added", "removed"),
      by: string,
      by_device: string,
      account_id: optional(string),
    }),
  },
  "keys.low": { one_time_keys_left: number },
} as const satisfies Record<string, Shape>;

export type EventName = keyof typeof EVENTS;
export type EventOf<N extends EventName> = { event: N } & ShapeOf<(typeof EVENTS)[N]>;
export type ServerEvent = { [N in EventName]: EventOf<N> }[EventName];

export type Hello = EventOf<"hello">;
export type LinkRef = EventOf<"link.ref">;
export type LinkGranted = EventOf<"link.granted">;
export type LinkDeclined = EventOf<"link.declined">;
export type LinkCodeOffer = EventOf<"link.code.offer">;
export type LinkCodeAnswer = EventOf<"link.code.answer">;
export type DevicesChanged = EventOf<"devices.changed">;
export type MessageEvent = EventOf<"message">;
export type GroupsChanged = EventOf<"groups.changed">;

/** The names of every event and of each one's fields (for the test that compares them with the server's). */
export const EVENT_FIELDS: Record<EventName, string[]> = Object.fromEntries(
  Object.entries(EVENTS).map(([name, fields]) => [name, Object.keys(fields)]),
) as Record<EventName, string[]>;

/** The frame as a ServerEvent, or null if it names no event we know or a field is missing or wrong. */
export function parseServerEvent(frame: Record<string, unknown>): ServerEvent | null {
  const name = frame.event;
  if (typeof name !== "string" || !Object.hasOwn(EVENTS, name)) return null;
  return shape(EVENTS[name as EventName])(frame) ? (frame as ServerEvent) : null;
}
