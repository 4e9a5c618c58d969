/**
 * Glue between a page (primary app or companion) and its messenger: the page hands over each
 * authenticated socket, forwards server events, says when the socket dropped, and wipes on unlink.
 */
import type { LockstepSocket, ServerEvent } from "../net/socket";
import { type Identity, Messenger } from "./messenger";
import { DatabaseGone } from "./messageStore";
import { MessengerControls } from "./controls";
import { Notifier } from "./notifier";
import { MessengerView } from "./view";
import { type AttachedCalls, attachCalls } from "../calls/wire";
import { CallNotifier } from "./callNotifier";

export class MessengerHost {
  readonly view: MessengerView;
  /** Notifications and mute, attachment drafts, keyboard shortcuts, the title's unread count. */
  readonly controls: MessengerControls;
  private messenger: Messenger | null = null;
  private opening: Promise<Messenger> | null = null;
  private deviceId: string | null = null;
  private socket: LockstepSocket | null = null;
  private release: () => void = () => undefined;
  /** This tab holds the device's lock (so an `opening` in flight will finish). */
  private holding = false;
  /** Voice and video calls on this messenger (docs/protocol/messaging.md §14). */
  calls: AttachedCalls | null = null;
  /** Incoming calls while the page is in the background. */
  private callNotifier: CallNotifier | null = null;

  /** `settings`: where the page shows the messenger's settings (the phone app's Settings screen), if it has such a place. */
  constructor(parent: HTMLElement, before: Node | null = null, settings: HTMLElement | null = null) {
    const mount = document.createElement("div");
    mount.className = "messenger-mount"; // layout.css lays the linked computer's page out around it
    parent.insertBefore(mount, before);
    this.view = new MessengerView(mount);
    const view = this.view;
    this.controls = new MessengerControls(
      {
        root: view.root,
        chatControls: view.chatControls,
        get current() {
          return view.openChat;
        },
        open: (conversation) => view.open(conversation),
        onOpen: (listener) => view.onOpen(listener),
        sendFile: (conversation, file, caption) => view.sendFile(conversation, file, caption),
      },
      settings,
    );
    this.view.root.hidden = true;
    // Presence (§15.5): `online` while the page is visible, `offline` once it stays hidden (a closing
    // tab hides too, and says nothing: see liveStatus.ts HIDDEN_GRACE_MS).
    document.addEventListener("visibilitychange", () =>
      this.messenger?.setVisible(document.visibilityState === "visible"),
    );
  }

  /** After `auth` succeeded on `socket`: open this device's messenger (once) and sync it. */
  async start(socket: LockstepSocket, identity: Identity): Promise<void> {
    this.socket = socket;
    if (this.deviceId !== identity.deviceId) {
      this.messenger?.close();
      this.release();
      this.messenger = null;
      this.deviceId = identity.deviceId;
      this.opening = this.acquire(identity.deviceId).then((tookOver) => {
        performance.mark("lockstep:messenger-opening"); // for bench/burst.py: what page start costs
        return Messenger.open(identity, tookOver);
      });
    }
    let messenger: Messenger;
    try {
      messenger = await (this.opening as Promise<Messenger>);
    } catch (error) {
      // Another tab wiped the device before it let the lock go: this tab logs out on its message ("unlinked").
      if (error instanceof DatabaseGone) return;
      // A damaged or foreign database (e.g. written by another version): say so instead of failing silently.
      this.view.root.hidden = false;
      this.view.showProblem(
        "This browser's message store could not be opened. Unlink and link this device again to start afresh.",
      );
      return;
    }
    if (this.deviceId !== identity.deviceId) return; // wiped meanwhile (wipe closes it)
    if (this.socket !== socket || !socket.isOpen) return; // a newer socket took over meanwhile
    if (this.messenger !== messenger) {
      this.messenger = messenger;
      this.view.bind(messenger);
      performance.mark("lockstep:chat-list-drawn");
      this.calls?.close();
      this.callNotifier?.close();
      this.calls = attachCalls(messenger, this.view, () => this.socket);
      const notifier = this.controls.notifier;
      this.callNotifier = new CallNotifier(
        this.calls.phone,
        () => notifier.permission,
        () => notifier.showsPreviews,
      );
      this.controls.bind(messenger, identity.deviceId);
      messenger.setVisible(document.visibilityState === "visible");
    }
    this.view.root.hidden = false;
    messenger.noteListVersion(identity.listVersion);
    await messenger.attach(socket);
  }

  /**
   * One tab at a time runs a device's messenger (its ratchets live in one IndexedDB database, like
   * messenger.py's e2e.lock): a second tab waits, says so, and takes over when the first one closes.
   * Resolves true if it took over (the database then exists unless the first tab wiped it).
   */
  private acquire(deviceId: string): Promise<boolean> {
    if (!("locks" in navigator)) return Promise.resolve(false);
    const name = `lockstep-messenger-${deviceId}`;
    const hold = (): Promise<void> => {
      this.holding = true;
      return new Promise<void>((release) => {
        this.release = () => {
          this.holding = false;
          release();
        };
      });
    };
    return new Promise<boolean>((resolve) => {
      let got = false;
      void navigator.locks
        .request(name, { ifAvailable: true }, (lock) => {
          if (!lock) return undefined;
          got = true;
          resolve(false);
          return hold();
        })
        .then(() => {
          if (got || this.deviceId !== deviceId) return; // released by us, or this device was wiped meanwhile
          this.view.setElsewhere(true);
          this.view.root.hidden = false;
          void navigator.locks.request(name, () => {
            if (this.deviceId !== deviceId) return undefined; // wiped while waiting: let it go
            this.view.setElsewhere(false);
            resolve(true);
            return hold();
          });
        });
    });
  }

  onEvent(event: ServerEvent): void {
    this.messenger?.onEvent(event);
  }

  disconnected(): void {
    this.messenger?.detach();
  }

  /** Primary: history for companions waiting for it ("Send history now", linking.md §4.6). */
  async syncHistory(): Promise<void> {
    await this.messenger?.syncHistory();
  }

  setDevices(text: string): void {
    this.view.setDevices(text);
  }

  /** The device was unlinked: forget its keys, sessions and messages. */
  async wipe(knownDeviceId?: string): Promise<void> {
    const deviceId = knownDeviceId ?? this.deviceId;
    const opening = this.holding ? this.opening : null; // waiting for another tab's lock: nothing opens
    const release = this.release; // this device's lock, not one a later start() takes meanwhile
    this.calls?.close();
    this.calls = null;
    this.callNotifier?.close();
    this.callNotifier = null;
    this.messenger?.close();
    this.messenger = null;
    this.opening = null;
    this.deviceId = null;
    if (opening) await opening.then((m) => m.close()).catch(() => undefined);
    this.view.bind(null);
    this.controls.bind(null, null);
    this.view.root.hidden = true;
    // Deleted before the lock is let go: a tab waiting for it then finds no database and makes none.
    if (deviceId) await Promise.all([Messenger.wipe(deviceId), Notifier.wipe(deviceId)]);
    release();
  }
}
