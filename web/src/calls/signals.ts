/**
 * Call signals: the body of a `call` envelope (docs/protocol/messaging.md §14.2), the browser twin of
 * src/lockstep/calls/signals.py — same shapes, same checks, same reasons. `parseSignal` accepts exactly
 * the six signals and throws SignalError with the reason for anything else.
 */

export class SignalError extends Error {
  override name = "SignalError";
}

export type Media = "audio" | "video";
export type HangupReason = "ended" | "cancelled" | "no-answer" | "failed" | "replaced";

export interface Candidate {
  candidate: string;
  mid: string | null;
  m_line_index: number | null;
}

export type Signal =
  | { type: "offer"; call_id: string; media: Media; sdp: string }
  | { type: "answer"; call_id: string; sdp: string }
  | { type: "candidates"; call_id: string; candidates: Candidate[] }
  | { type: "hangup"; call_id: string; reason: HangupReason }
  | { type: "busy"; call_id: string }
  | { type: "decline"; call_id: string };

const CALL_ID = /^[A-Za-z0-9_-]{16,64}$/;
export const MAX_SDP = 20_000;
const MAX_CANDIDATES = 32;
const MAX_CANDIDATE = 512;
const SDP_LINE = /^[a-z]=[^\0\r\n]*$/;
const FINGERPRINT = /^a=fingerprint:[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}$/;
const ICE_CHARS = /^[A-Za-z0-9+/]{1,32}$/;
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}$/;
const MID = /^[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,32}$/;
const FQDN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9A-Fa-f:.]{2,45}$/;
const TYPES = new Set(["host", "srflx", "prflx", "relay"]);
const HANGUP_REASONS = new Set<string>(["ended", "cancelled", "no-answer", "failed", "replaced"]);

/** A WebRTC description: RFC 8866 lines from `v=0`, o= and s=, an audio or video section, ICE
 * credentials (RFC 8839 §5.4) and a DTLS fingerprint (RFC 8122 §5). */
export function checkSdp(sdp: unknown): string {
  if (typeof sdp !== "string") throw new SignalError("'sdp' must be a string");
  if (sdp.length > MAX_SDP) throw new SignalError(`a session description longer than ${String(MAX_SDP)} characters`);
  const lines = sdp.split(/\r?\n/).filter((line) => line !== "");
  if (lines[0] !== "v=0") throw new SignalError("a session description starts with v=0");
  lines.forEach((line, index) => {
    if (!SDP_LINE.test(line))
      throw new SignalError(`session description line ${String(index + 1)} is not <letter>=<value>`);
  });
  const types = new Set(lines.map((line) => line[0]));
  if (!types.has("o") || !types.has("s")) throw new SignalError("a session description needs o= and s= lines");
  if (!lines.some((line) => line.startsWith("m=audio ") || line.startsWith("m=video ")))
    throw new SignalError("a session description with no audio or video section");
  if (!lines.some((line) => line.startsWith("a=ice-ufrag:")) || !lines.some((line) => line.startsWith("a=ice-pwd:")))
    throw new SignalError("a session description without ICE credentials");
  if (!lines.some((line) => FINGERPRINT.test(line)))
    throw new SignalError("a session description without a DTLS fingerprint");
  return sdp;
}

function checkAddress(address: string): void {
  if (IPV4.test(address) || (address.includes(":") && IPV6.test(address)) || FQDN.test(address)) return;
  throw new SignalError("a candidate's address is neither an IP address nor a host name");
}

function checkPort(port: string): void {
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw new SignalError("a candidate's port is not 0-65535");
}

/** An ICE candidate attribute (RFC 8839 §5.1), `candidate:` included, or "" for end-of-candidates. */
export function checkCandidateLine(line: unknown): string {
  if (typeof line !== "string") throw new SignalError("'candidate' must be a string");
  if (line === "") return line;
  if (line.length > MAX_CANDIDATE) throw new SignalError(`a candidate longer than ${String(MAX_CANDIDATE)} characters`);
  if (!line.startsWith("candidate:")) throw new SignalError("a candidate starts with 'candidate:'");
  const fields = line.slice("candidate:".length).split(" ");
  if (fields.length < 8)
    throw new SignalError("a candidate needs foundation, component, transport, priority, address, port, typ");
  const [foundation, component, transport, priority, address, port, typ, kind] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const rest = fields.slice(8);
  if (!ICE_CHARS.test(foundation)) throw new SignalError("a candidate's foundation is 1-32 ice-chars");
  if (!/^\d{1,3}$/.test(component) || Number(component) < 1 || Number(component) > 256)
    throw new SignalError("a candidate's component id is 1-256");
  if (!TOKEN.test(transport)) throw new SignalError("a candidate's transport is not a token");
  if (!/^\d{1,10}$/.test(priority) || Number(priority) >= 2 ** 32)
    throw new SignalError("a candidate's priority is not a 32-bit number");
  checkAddress(address);
  checkPort(port);
  if (typ !== "typ" || !TYPES.has(kind)) throw new SignalError("a candidate's type is host, srflx, prflx or relay");
  if (rest.length % 2) throw new SignalError("a candidate's extensions come as name-value pairs");
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i] ?? "";
    const value = rest[i + 1] ?? "";
    if (!TOKEN.test(name) || !value) throw new SignalError("a candidate extension is a token and a value");
    if (name === "raddr") checkAddress(value);
    else if (name === "rport") checkPort(value);
  }
  return line;
}

function parseCandidate(value: unknown): Candidate {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new SignalError("a candidate is an object");
  const { candidate, mid, m_line_index: index } = value as Record<string, unknown>;
  if (mid !== null && mid !== undefined && (typeof mid !== "string" || !MID.test(mid)))
    throw new SignalError("a candidate's 'mid' is a short token or null");
  if (
    index !== null &&
    index !== undefined &&
    (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= 64)
  )
    throw new SignalError("a candidate's 'm_line_index' is 0-63 or null");
  if ((mid === null || mid === undefined) && (index === null || index === undefined))
    throw new SignalError("a candidate names its media section by 'mid' or 'm_line_index'");
  return { candidate: checkCandidateLine(candidate), mid: mid ?? null, m_line_index: index ?? null };
}

export function parseSignal(body: unknown): Signal {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new SignalError("a call signal is an object");
  const value = body as Record<string, unknown>;
  const callId = value.call_id;
  if (typeof callId !== "string" || !CALL_ID.test(callId))
    throw new SignalError("a call id is 16 to 64 base64url characters");
  switch (value.type) {
    case "offer": {
      if (value.media !== "audio" && value.media !== "video")
        throw new SignalError("an offer's media is audio or video");
      return { type: "offer", call_id: callId, media: value.media, sdp: checkSdp(value.sdp) };
    }
    case "answer":
      return { type: "answer", call_id: callId, sdp: checkSdp(value.sdp) };
    case "candidates": {
      const list = value.candidates;
      if (!Array.isArray(list) || list.length < 1 || list.length > MAX_CANDIDATES)
        throw new SignalError(`'candidates' is a list of 1 to ${String(MAX_CANDIDATES)} candidates`);
      return { type: "candidates", call_id: callId, candidates: list.map(parseCandidate) };
    }
    case "hangup": {
      const reason = value.reason;
      if (typeof reason !== "string" || !HANGUP_REASONS.has(reason))
        throw new SignalError(`a hang-up's reason is one of ${[...HANGUP_REASONS].join(", ")}`);
      return { type: "hangup", call_id: callId, reason: reason as HangupReason };
    }
    case "busy":
      return { type: "busy", call_id: callId };
    case "decline":
      return { type: "decline", call_id: callId };
    default:
      throw new SignalError("unknown call signal type");
  }
}
