/**
 * The primary's side of linking a device (linking.md §8, "Primary"), without the page: one explicit state
 * (`LinkFlowStep`), changed only here, that the page renders (../primary.ts).
 *
 *   closed → scanning ─────────────→ inspecting → confirming → approving → linked
 *   closed → entering → offering ──↗   (a typed code, linking.md §10: CPace first)
 *                                  inspecting → relay → confirming  (another network, §6.5: the number first)
 *   scanning | offering | inspecting | relay | approving → refused(error)   relay | confirming → closed (declined)
 *
 * The page runs the camera while the step is `scanning` and hands back what it read (`scanned`) under the
 * number of that scan, so a result from a scan that was cancelled meanwhile changes nothing; likewise a
 * server answer that comes after the flow moved on. DOM-free: the socket and the account come from
 * `ports`, and `ports.linked` keeps the new device list.
 */
import { b64uEncode } from "../../crypto/base64";
import { type DeviceList, MAX_COMPANIONS, checkName, companions, unusedName } from "../../link/deviceList";
import { type BuiltGrant, TooManyDevices, buildGrant } from "../../link/grant";
import { type DecodedLinkCode, decodeLinkText } from "../../link/qr";
import { WrongNumber, numberMatches } from "../../link/matching";
import { isJsonObject } from "../../net/json";
import type { ServerEvent } from "../../net/socket";
import type { LinkSocket } from "../companion/linker";
import { CodeOffers } from "./codeEntry";

/** The account as the flow needs it. */
export interface LinkingAccount {
  accountId: string;
  handle: string;
  displayName: string;
  accountPublic: Uint8Array;
  /** The account's private key (non-extractable): signs the next device list. */
  accountKey: CryptoKey;
  list: DeviceList;
}

export interface LinkFlowPorts {
  /** The signed-in socket, if there is one now. */
  socket(): LinkSocket | null;
  account(): LinkingAccount | null;
  /** The server took the grant: keep the new device list (and how the server described the device). */
  linked(grant: BuiltGrant, description: string): Promise<void>;
}

/** What the phone shows before consent (linking.md §6.2): the companion as the server saw it. */
export interface LinkOffer {
  code: DecodedLinkCode;
  /** Whatever the computer's User-Agent claims. */
  description: string;
  /** The address the server saw, and its network ("private network 192.168.1.0/24"), if it said. */
  address: string;
  place: string;
  sameNetwork: boolean;
  /** This phone's address as the server saw it, if it said. */
  primaryAddress: string | null;
  /** A name for the new device that no other device of the account has. */
  suggestedName: string;
  /** When the server answered (Date.now()), and how old the code was then (ms). */
  inspectedAt: number;
  ageMs: number;
}

export type LinkFlowStep =
  | { step: "closed" }
  | { step: "scanning"; scan: number }
  | { step: "entering" }
  | { step: "offering" }
  | { step: "inspecting"; code: DecodedLinkCode }
  /** The companion is on another network: a full-screen warning, and the number it shows, before consent. */
  | { step: "relay"; offer: LinkOffer }
  | { step: "confirming"; offer: LinkOffer }
  | { step: "approving"; offer: LinkOffer; name: string }
  | { step: "linked"; name: string; handle: string }
  | { step: "refused"; error: unknown; canRetry: boolean };

export class PrimaryLinkFlow {
  private current: LinkFlowStep = { step: "closed" };
  private scans = 0;
  private readonly codeOffers = new CodeOffers();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly ports: LinkFlowPorts) {}

  get step(): LinkFlowStep {
    return this.current;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Opens the flow on the scanner; returns the scan's number, or null when not signed in yet. */
  startScan(): number | null {
    if (!this.ports.account() || !this.ports.socket()) return null;
    this.scans += 1;
    this.set({ step: "scanning", scan: this.scans });
    return this.scans;
  }

  /** Every server event (a typed code's answer arrives as one). */
  onEvent(event: ServerEvent): void {
    this.codeOffers.onEvent(event);
  }

  /** Opens the flow on "Link with a code" (the warning, then the code); false when not signed in yet. */
  startCodeEntry(): boolean {
    if (!this.ports.account() || !this.ports.socket()) return false;
    this.set({ step: "entering" });
    return true;
  }

  /** The person typed `text`: CPace with the computer through the server, then as after a scan. */
  async enterCode(text: string): Promise<void> {
    const socket = this.ports.socket();
    if (this.current.step !== "entering" || !socket) return;
    const offering: LinkFlowStep = { step: "offering" };
    this.set(offering);
    let code: DecodedLinkCode;
    try {
      code = await this.codeOffers.offer(socket, text);
    } catch (error) {
      if (this.still(offering)) this.refuse(error, false);
      return;
    }
    if (this.still(offering)) await this.inspect(code);
  }

  /** The camera of scan `scan` read `text`. */
  async scanned(scan: number, text: string): Promise<void> {
    if (this.current.step !== "scanning" || this.current.scan !== scan) return;
    const socket = this.ports.socket();
    if (!socket) {
      this.refuse(new Error());
      return;
    }
    let code: DecodedLinkCode;
    try {
      code = decodeLinkText(text, socket.hello.server.origin);
    } catch (error) {
      this.refuse(error);
      return;
    }
    await this.inspect(code);
  }

  /** Asks the server what it knows of the computer showing `code`, for consent. */
  private async inspect(code: DecodedLinkCode): Promise<void> {
    const socket = this.ports.socket();
    if (!socket) {
      this.refuse(new Error());
      return;
    }
    const inspecting: LinkFlowStep = { step: "inspecting", code };
    this.set(inspecting);
    let context: Record<string, unknown>;
    try {
      context = await socket.request("link.inspect", { ref: b64uEncode(code.ref) });
    } catch (error) {
      if (this.still(inspecting)) this.refuse(error);
      return;
    }
    if (!this.still(inspecting)) return; // closed while the server answered
    const offer = this.offer(code, context);
    this.set(offer.sameNetwork ? { step: "confirming", offer } : { step: "relay", offer });
  }

  /** On another network, the person typed the companion's number: consent next if it is the one, else the
   * link is refused and declined (reason wrong_number). */
  async checkNumber(typed: string): Promise<void> {
    const relay = this.current;
    if (relay.step !== "relay") return;
    const { code } = relay.offer;
    const matched = await numberMatches(typed, code.ref, code.linkSecret);
    if (!this.still(relay)) return;
    if (matched) {
      this.set({ step: "confirming", offer: relay.offer });
      return;
    }
    this.refuse(new WrongNumber(), false);
    const socket = this.ports.socket();
    await socket?.request("link.decline", { ref: b64uEncode(code.ref), reason: "wrong_number" }).catch(() => undefined);
  }

  /** The camera of scan `scan` failed (denied, missing…). */
  scanFailed(scan: number, error: unknown): void {
    if (this.current.step === "scanning" && this.current.scan === scan) this.refuse(error);
  }

  /** Seconds since the code was shown on the computer (while confirming). */
  ageSeconds(now: number): number | null {
    if (this.current.step !== "confirming") return null;
    const { ageMs, inspectedAt } = this.current.offer;
    return Math.max(0, Math.round((ageMs + now - inspectedAt) / 1000));
  }

  /**
   * The person approved under `typedName`: build and send the grant. Returns false, changing nothing, when
   * the name is not a device name (1–64 characters).
   */
  async approve(typedName: string): Promise<boolean> {
    const phase = this.current;
    const account = this.ports.account();
    const socket = this.ports.socket();
    if (phase.step !== "confirming" || !account || !socket) return true;
    const typed = checkName(typedName);
    // Two devices with one name could not be told apart (or unlinked by name): add " (2)" as needed.
    const name = typed === null ? null : unusedName(account.list, typed);
    if (name === null) return false;
    const { offer } = phase;
    // At most MAX_COMPANIONS: refuse locally, before asking the server.
    if (companions(account.list).length >= MAX_COMPANIONS) {
      this.refuse(new TooManyDevices(), false);
      return true;
    }
    this.set({ step: "approving", offer, name });
    try {
      const grant = await buildGrant({
        code: offer.code,
        origin: socket.hello.server.origin,
        account: {
          id: account.accountId,
          handle: account.handle,
          display_name: account.displayName,
          key: b64uEncode(account.accountPublic),
        },
        accountPrivateKey: account.accountKey,
        currentList: account.list,
        deviceName: name,
        now: socket.serverNow(),
        otherNetwork: offer.sameNetwork ? undefined : offer.address,
      });
      await socket.request("link.approve", {
        ref: b64uEncode(offer.code.ref),
        enc: b64uEncode(grant.enc),
        ciphertext: b64uEncode(grant.ciphertext),
        certificate: grant.certificate,
        device_list: grant.deviceList,
      });
      await this.ports.linked(grant, offer.description);
      this.set({ step: "linked", name, handle: account.handle });
    } catch (error) {
      this.refuse(error, !(error instanceof TooManyDevices));
    }
    return true;
  }

  /** The person declined: the flow closes, and the server is told (the computer then says so). Returns
   * what to tell the person, or null when there was nothing to decline. */
  async decline(): Promise<string | null> {
    const phase = this.current;
    const socket = this.ports.socket();
    this.close();
    if ((phase.step !== "confirming" && phase.step !== "relay") || !socket) return null;
    try {
      await socket.request("link.decline", { ref: b64uEncode(phase.offer.code.ref) });
      return "Declined. Nothing was linked.";
    } catch {
      return "Nothing was linked.";
    }
  }

  close(): void {
    if (this.current.step !== "closed") this.set({ step: "closed" });
  }

  /** The flow is still at `step` (it may have moved on while a request was out). */
  private still(step: LinkFlowStep): boolean {
    return this.current === step;
  }

  private refuse(error: unknown, canRetry = true): void {
    this.set({ step: "refused", error, canRetry });
  }

  private set(next: LinkFlowStep): void {
    this.current = next;
    for (const listener of this.listeners) listener();
  }

  private offer(code: DecodedLinkCode, context: Record<string, unknown>): LinkOffer {
    const companion = isJsonObject(context.companion) ? context.companion : {};
    const network = isJsonObject(context.network) ? context.network : {};
    const description =
      typeof companion.description === "string" && companion.description ? companion.description : "Unknown device";
    const suggested = checkName(description.slice(0, 64)) ?? "Linked device";
    const list = this.ports.account()?.list;
    return {
      code,
      description,
      address: typeof companion.address === "string" ? companion.address : "unknown",
      place: networkLabel(companion.network),
      sameNetwork: network.same_network === true,
      primaryAddress: typeof network.primary_address === "string" ? network.primary_address : null,
      suggestedName: list ? unusedName(list, suggested) : suggested,
      inspectedAt: Date.now(),
      ageMs: typeof context.age_ms === "number" ? context.age_ms : 0,
    };
  }
}

/** "private network 192.168.1.0/24" for the server's description of an address's network (linking.md §6.2). */
export function networkLabel(value: unknown): string {
  const network = isJsonObject(value) ? value : {};
  const prefix = typeof network.prefix === "string" ? network.prefix : "";
  switch (network.kind) {
    case "loopback":
      return "the server's own machine";
    case "private":
      return `private network ${prefix}`;
    case "link-local":
      return `link-local network ${prefix}`;
    case "public":
      return `public internet, network ${prefix}`;
    default:
      return "";
  }
}
