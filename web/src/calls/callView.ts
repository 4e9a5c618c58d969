/**
 * The call screen of both web apps: who is calling with Answer / Decline, then the call (peer's name,
 * duration, mute, camera on/off, voice ↔ video, hang up), a banner while the connection is being
 * restored, "answered on another device" and "in a call on another device", and a clear line when the
 * microphone or camera is refused or absent. Text only (never innerHTML); test ids are stable.
 */
import "./calls.css";
import { el, show } from "../ui/dom";
import type { Phone } from "./phone";

/** How long the end of a call stays on screen. */
const ENDED_MS = 4000;

const STATUS: Record<string, (media: string) => string> = {
  "ringing-out": () => "Calling…",
  "ringing-in": (media) => `Incoming ${media} call`,
  connecting: () => "Connecting…",
  connected: () => "Connected",
  reconnecting: () => "Reconnecting…",
};

function button(text: string, testid: string, className = ""): HTMLButtonElement {
  return el("button", { text, testid, className, attrs: { type: "button" } });
}

export class CallView {
  readonly root: HTMLElement;
  private peer = el("h2", { testid: "call-peer" });
  private status = el("p", { testid: "call-status", attrs: { role: "status" } });
  private duration = el("p", { testid: "call-duration", className: "small" });
  private banner = el("p", {
    className: "call-banner",
    testid: "call-reconnecting",
    text: "Connection lost — reconnecting…",
    attrs: { role: "status" },
  });
  private problem = el("p", { className: "call-problem", testid: "call-problem", attrs: { role: "alert" } });
  private remoteVideo = el("video", { className: "remote", testid: "call-remote-video" });
  private localVideo = el("video", { className: "local", testid: "call-local-video" });
  private remoteAudio = el("audio", { testid: "call-remote-audio" });
  private answer = button("Answer", "call-answer", "answer");
  private decline = button("Decline", "call-decline", "hangup");
  private mute = button("Mute", "call-mute");
  private camera = button("Camera off", "call-camera");
  private switcher = button("Video", "call-switch");
  private hangup = button("Hang up", "call-hangup", "hangup");
  private close = button("Close", "call-close");
  private ticker: ReturnType<typeof setInterval> | null = null;
  private dismissing: ReturnType<typeof setTimeout> | null = null;

  constructor(
    mount: HTMLElement,
    private readonly phone: Phone,
  ) {
    this.remoteVideo.autoplay = this.remoteVideo.playsInline = true;
    this.localVideo.autoplay = this.localVideo.playsInline = this.localVideo.muted = true;
    this.remoteAudio.autoplay = true;
    this.root = el(
      "section",
      { className: "call-screen", testid: "call-screen", attrs: { "aria-label": "Call" } },
      this.peer,
      this.status,
      this.duration,
      this.banner,
      el("div", { className: "call-videos" }, this.remoteVideo, this.localVideo),
      this.remoteAudio,
      this.problem,
      el(
        "div",
        { className: "call-buttons" },
        this.answer,
        this.decline,
        this.mute,
        this.camera,
        this.switcher,
        this.hangup,
        this.close,
      ),
    );
    this.root.hidden = true;
    mount.append(this.root);
    this.answer.addEventListener("click", () => void phone.answer());
    this.decline.addEventListener("click", () => void phone.decline());
    this.hangup.addEventListener("click", () => void phone.hangUp());
    this.mute.addEventListener("click", () => {
      phone.toggleMute();
    });
    this.camera.addEventListener("click", () => {
      phone.toggleCamera();
    });
    this.switcher.addEventListener("click", () => void phone.switchMedia());
    this.close.addEventListener("click", () => {
      phone.dismiss();
    });
    phone.subscribe(() => {
      this.render();
    });
  }

  render(): void {
    const s = this.phone.snapshot();
    const call = s.call;
    const ended = call === null && s.ended !== null;
    // The end of a call stays for a moment; a problem (microphone refused) until it is closed.
    if (ended && s.problem === "" && this.dismissing === null)
      this.dismissing = setTimeout(() => {
        this.dismissing = null;
        if (this.phone.snapshot().call === null) this.phone.dismiss();
      }, ENDED_MS);
    const visible = call !== null || ended || s.problem !== "";
    this.root.hidden = !visible;
    this.root.dataset.state = call?.state ?? (ended ? "ended" : "");
    this.problem.textContent = s.problem;
    show(this.problem, s.problem !== "");
    if (!visible) {
      this.stopTicker();
      return;
    }
    this.peer.textContent = call ? s.peerName : "";
    if (call?.state === "elsewhere")
      this.status.textContent = call.role === "callee" ? "Answered on another device" : "In a call on another device";
    else if (call)
      this.status.textContent = (STATUS[call.state] ?? (() => call.state))(call.media === "video" ? "video" : "voice");
    else if (ended && s.ended) this.status.textContent = s.ended.text;
    else this.status.textContent = "";
    const state = call?.state;
    const inCall = state === "connecting" || state === "connected" || state === "reconnecting";
    show(this.banner, state === "reconnecting");
    show(this.answer, state === "ringing-in");
    show(this.decline, state === "ringing-in");
    show(this.mute, inCall);
    show(this.camera, inCall && call?.media === "video");
    show(this.switcher, inCall);
    show(this.hangup, inCall || state === "ringing-out");
    show(this.close, !call);
    this.mute.textContent = s.muted ? "Unmute" : "Mute";
    this.camera.textContent = s.cameraOff ? "Camera on" : "Camera off";
    this.switcher.textContent = call?.media === "video" ? "Voice only" : "Video";
    this.attach(this.remoteAudio, s.remoteStream);
    this.attach(this.remoteVideo, call?.media === "video" ? s.remoteStream : null);
    this.attach(this.localVideo, call?.media === "video" ? s.localStream : null);
    show(this.remoteVideo, call?.media === "video");
    show(this.localVideo, call?.media === "video");
    if (state === "connected" && s.connectedAt !== null) this.startTicker(s.connectedAt);
    else if (!inCall) this.stopTicker();
  }

  private attach(element: HTMLMediaElement, stream: MediaStream | null): void {
    if (element.srcObject !== stream) element.srcObject = stream;
  }

  private startTicker(since: number): void {
    const tick = (): void => {
      const seconds = Math.floor((Date.now() - since) / 1000);
      this.duration.textContent = `${String(Math.floor(seconds / 60))}:${String(seconds % 60).padStart(2, "0")}`;
    };
    tick();
    this.ticker ??= setInterval(tick, 1000);
  }

  private stopTicker(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    this.duration.textContent = "";
  }
}
