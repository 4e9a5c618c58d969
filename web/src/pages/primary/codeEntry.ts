/**
 * The phone app's "Link with a code" step (linking.md §10.3): CPace on the typed code through the server,
 * resolving to the companion's code as a scan would, so the page then inspects it, shows the context and
 * asks as for a QR code. A wrong code is declined with reason `wrong_code` (the companion is told).
 */
import { b64uDecode, b64uEncode } from "../../crypto/base64";
import { equalBytes } from "../../crypto/bytes";
import { WrongCode, openAnswer, parseCode, startPrimary } from "../../link/byCode";
import type { DecodedLinkCode } from "../../link/qr";
import type { LinkCodeAnswer, ServerEvent } from "../../net/events";
import type { LockstepSocket } from "../../net/socket";

/** How long to wait for the companion's answer (it answers at once; past this it has gone). */
const ANSWER_TIMEOUT_MS = 30_000;

export class CompanionSilent extends Error {
  override name = "CompanionSilent";
  constructor() {
    super("The computer did not answer. Get a new code on the computer and try again.");
  }
}

export class CodeOffers {
  private readonly waiting = new Map<string, (answer: LinkCodeAnswer) => void>();

  /** Feed every server event here: a `link.code.answer` settles the offer it names. */
  onEvent(event: ServerEvent): void {
    if (event.event === "link.code.answer") this.waiting.get(event.code_id)?.(event);
  }

  /** Parses `text` (TypedCodeInvalid), runs CPace as A, and opens the companion's answer (WrongCode). */
  async offer(socket: Pick<LockstepSocket, "hello" | "request">, text: string): Promise<DecodedLinkCode> {
    const code = parseCode(text);
    const run = await startPrimary(code, socket.hello.server.origin);
    const { codeId } = run.offer;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answered = new Promise<LinkCodeAnswer>((resolve, reject) => {
      this.waiting.set(codeId, resolve);
      timer = setTimeout(() => reject(new CompanionSilent()), ANSWER_TIMEOUT_MS);
    });
    answered.catch(() => undefined); // settled below; never an unhandled rejection
    try {
      const result = await socket.request("link.code.offer", {
        code_id: codeId,
        sid: b64uEncode(run.offer.sid),
        share: b64uEncode(run.offer.share),
      });
      const ref = typeof result.ref === "string" ? result.ref : "";
      const answer = await answered;
      try {
        const decoded = await openAnswer(run, b64uDecode(answer.share), b64uDecode(answer.sealed));
        if (!equalBytes(decoded.ref, b64uDecode(ref))) throw new WrongCode();
        return decoded;
      } catch (error) {
        if (error instanceof WrongCode) {
          await socket.request("link.decline", { ref, reason: "wrong_code" }).catch(() => undefined);
        }
        throw error;
      }
    } finally {
      clearTimeout(timer);
      this.waiting.delete(codeId);
    }
  }
}
