/** Narrowing for JSON that came from outside (the network, IndexedDB, a peer): `unknown` until checked. */
export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
