/**
 * Glue between a page (primary app or companion) and its messenger: the page hands over each
 * authenticated socket, forwards server events, says when the socket dropped, and wipes on unlink.
 */
import type { LockstepSocket, ServerEvent } from "../net/socket";
import { type Identity, Messenger } from "./messenger";
import { MessengerView } from "./view";

export class MessengerHost {
  readonly view: MessengerView;
  private messenger: Messenger | null = null;
  private opening: Promise<Messenger> | null = null;
  private deviceId: string | null = null;

  constructor(parent: HTMLElement, before: Node | null = null) {
    const mount = document.createElement("div");
    parent.insertBefore(mount, before);
    this.view = new MessengerView(mount);
    this.view.root.hidden = true;
  }

  /** After `auth` succeeded on `socket`: open this device's messenger (once) and sync it. */
  async start(socket: LockstepSocket, identity: Identity): Promise<void> {
    if (this.deviceId !== identity.deviceId) {
      this.messenger?.close();
      this.messenger = null;
      this.deviceId = identity.deviceId;
      this.opening = Messenger.open(identity);
    }
    const messenger = await (this.opening as Promise<Messenger>);
    if (this.messenger !== messenger) {
      this.messenger = messenger;
      this.view.bind(messenger);
    }
    this.view.root.hidden = false;
    await messenger.attach(socket);
  }

  onEvent(event: ServerEvent): void {
    this.messenger?.onEvent(event);
  }

  disconnected(): void {
    this.messenger?.detach();
  }

  setDevices(text: string): void {
    this.view.setDevices(text);
  }

  /** The device was unlinked: forget its keys, sessions and messages. */
  async wipe(knownDeviceId?: string): Promise<void> {
    const deviceId = knownDeviceId ?? this.deviceId;
    this.messenger?.close();
    this.messenger = null;
    this.opening = null;
    this.deviceId = null;
    this.view.bind(null);
    this.view.root.hidden = true;
    if (deviceId) await Messenger.wipe(deviceId);
  }
}
