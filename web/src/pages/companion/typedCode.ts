/**
 * The companion page's typed code (linking.md §10): asking for one, showing it, and answering the one
 * CPace offer a phone makes on it. The payload sealed in the answer is the one a QR code would carry, so
 * the page then follows the grant exactly as after a scan.
 */
import { B64uError, b64uDecode, b64uEncode } from "../../crypto/base64";
import { WrongCode, answer, formatCode, isCodeId, newCode } from "../../link/byCode";
import type { LinkPayload } from "../../link/qr";
import type { LinkCodeOffer } from "../../net/events";
import type { LockstepSocket } from "../../net/socket";

/** `link.start` fields for the mode, and the code to show from its result (null for a QR session). */
export function startFields(typed: boolean): Record<string, unknown> {
  return typed ? { client: "browser", mode: "code" } : { client: "browser" };
}

export function codeFrom(result: Record<string, unknown>, typed: boolean): string | null {
  return typed && isCodeId(result.code_id) ? newCode(result.code_id) : null;
}

/** Shows `code` as `K7PM-2QXD`, in a monospace block a person can read out and type. */
export function showCode(element: HTMLElement, code: string): void {
  element.textContent = formatCode(code);
  element.hidden = false;
}

/** Answers a phone's offer; false if it cannot be answered (a malformed or low-order share: the code then
 * runs out, and the phone reads the silence as a wrong code). */
export async function answerOffer(
  socket: Pick<LockstepSocket, "hello" | "request">,
  code: string,
  payload: LinkPayload,
  offer: LinkCodeOffer,
): Promise<boolean> {
  let reply: { share: Uint8Array; sealed: Uint8Array };
  try {
    reply = await answer(code, socket.hello.server.origin, b64uDecode(offer.sid), b64uDecode(offer.share), payload);
  } catch (error) {
    if (error instanceof WrongCode || error instanceof B64uError) return false;
    throw error;
  }
  await socket.request("link.code.answer", { share: b64uEncode(reply.share), sealed: b64uEncode(reply.sealed) });
  return true;
}
