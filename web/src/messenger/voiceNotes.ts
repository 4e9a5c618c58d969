/**
 * Voice notes in the browser (messaging.md §16): recording with MediaRecorder (Opus in WebM, Chromium's
 * Opus container for recording) while a Web Audio analyser measures the loudness for the waveform, and
 * playing a received one with its waveform as the progress bar. The file itself travels like any media
 * (encrypted, ./mediaTransfer.ts); the length and waveform travel in the message's `voice` object.
 */
import { el } from "../ui/dom";
import { WAVEFORM_BARS, WAVEFORM_TOP, type VoiceNote } from "./actions";
import { describe } from "./errors";
import type { Messenger } from "./messenger";
import type { ChatMessage } from "./model";

const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"];
/** How often the microphone's loudness is sampled while recording (ms). */
const SAMPLE_MS = 50;
/** The longest voice note one recording makes (ms): the limit of §16 is far above what anyone records. */
const MAX_RECORDING_MS = 15 * 60_000;

/** 4200 ms → "0:04". */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return `${String(Math.floor(seconds / 60))}:${String(seconds % 60).padStart(2, "0")}`;
}

/** Loudness samples (any scale) → 64 bars of 0–100, the loudest 100 (§16); fewer samples are stretched. */
export function waveformOf(samples: number[]): number[] {
  if (!samples.length) return [];
  const bars = WAVEFORM_BARS;
  const size = samples.length / bars;
  const peaks = Array.from({ length: bars }, (_, i) =>
    Math.max(...samples.slice(Math.floor(i * size), Math.max(Math.floor((i + 1) * size), Math.floor(i * size) + 1))),
  );
  const top = Math.max(...peaks) || 1;
  return peaks.map((peak) => Math.round((peak * WAVEFORM_TOP) / top));
}

/** The composer's microphone: record, then send or cancel. */
export class VoiceRecorder {
  readonly root: HTMLElement;
  private start: HTMLButtonElement;
  private status: HTMLElement;
  private controls: HTMLElement;
  private recording: {
    recorder: MediaRecorder;
    stream: MediaStream;
    audio: AudioContext;
    chunks: Blob[];
    samples: number[];
    began: number;
    timer: number;
  } | null = null;

  constructor(
    private readonly send: (file: File, voice: VoiceNote) => Promise<void>,
    private readonly problem: (text: string) => void,
  ) {
    this.start = el("button", {
      className: "voice-start",
      text: "🎤",
      testid: "voice-record",
      attrs: { type: "button", "aria-label": "Record a voice note", title: "Record a voice note" },
    });
    this.status = el("span", { testid: "voice-recording", attrs: { role: "status" } });
    const done = el("button", {
      className: "primary small-button",
      text: "Send",
      testid: "voice-send",
      attrs: { type: "button", "aria-label": "Send voice note" },
    });
    const cancel = el("button", {
      className: "small-button",
      text: "✕",
      testid: "voice-cancel",
      attrs: { type: "button", "aria-label": "Cancel recording" },
    });
    this.controls = el("span", { className: "voice-recorder" }, this.status, cancel, done);
    this.controls.hidden = true;
    this.root = el("span", { className: "voice" }, this.start, this.controls);
    this.start.addEventListener("click", () => void this.begin());
    done.addEventListener("click", () => void this.finish(true));
    cancel.addEventListener("click", () => void this.finish(false));
  }

  set disabled(value: boolean) {
    this.start.disabled = value;
  }

  private async begin(): Promise<void> {
    if (this.recording) return;
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      this.problem(`The microphone could not be used: ${describe(error)}`);
      return;
    }
    const mimeType = RECORDING_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const audio = new AudioContext();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 1024;
    audio.createMediaStreamSource(stream).connect(analyser);
    const buffer = new Uint8Array(analyser.fftSize);
    const chunks: Blob[] = [];
    const samples: number[] = [];
    recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
    const began = performance.now();
    const timer = window.setInterval(() => {
      analyser.getByteTimeDomainData(buffer);
      let peak = 0;
      for (const value of buffer) peak = Math.max(peak, Math.abs(value - 128));
      samples.push(peak);
      const elapsed = performance.now() - began;
      this.status.textContent = `Recording ${formatDuration(elapsed)}`;
      if (elapsed > MAX_RECORDING_MS) void this.finish(true);
    }, SAMPLE_MS);
    recorder.start();
    this.recording = { recorder, stream, audio, chunks, samples, began, timer };
    this.status.textContent = "Recording 0:00";
    this.start.hidden = true;
    this.controls.hidden = false;
  }

  private async finish(keep: boolean): Promise<void> {
    const recording = this.recording;
    if (!recording) return;
    this.recording = null;
    window.clearInterval(recording.timer);
    const stopped = new Promise((resolve) => recording.recorder.addEventListener("stop", resolve, { once: true }));
    recording.recorder.stop();
    await stopped;
    for (const track of recording.stream.getTracks()) track.stop();
    void recording.audio.close();
    this.start.hidden = false;
    this.controls.hidden = true;
    if (!keep) return;
    const durationMs = Math.round(performance.now() - recording.began);
    const type = recording.recorder.mimeType.split(";")[0] || "audio/webm";
    const file = new File(recording.chunks, `voice-note.${type.endsWith("ogg") ? "ogg" : "webm"}`, { type });
    await this.send(file, { durationMs, waveform: waveformOf(recording.samples) });
  }
}

/** A received (or sent) voice note: play/pause, its waveform filling as it plays, and its length. */
export function voicePlayer(message: ChatMessage, voice: VoiceNote, messenger: Messenger | null): HTMLElement {
  const play = el("button", {
    className: "small-button",
    text: "▶",
    testid: "voice-play",
    attrs: { type: "button", "aria-label": "Play voice note" },
  });
  // Heights through the CSSOM: the page's CSP allows no style attributes.
  const levels = voice.waveform.length ? voice.waveform : new Array<number>(WAVEFORM_BARS).fill(0);
  const bars = levels.map((level) => {
    const bar = el("span");
    bar.style.height = `${String(Math.max(8, level))}%`;
    return bar;
  });
  const total = voice.durationMs ?? 0;
  const waveform = el(
    "div",
    {
      className: "waveform",
      testid: "voice-waveform",
      attrs: {
        role: "progressbar",
        "aria-label": "Voice note progress",
        "aria-valuemin": "0",
        "aria-valuemax": String(Math.round(total / 1000)),
        "aria-valuenow": "0",
      },
    },
    ...bars,
  );
  const length = el("span", {
    className: "muted small",
    testid: "voice-duration",
    text: voice.durationMs === null ? "" : formatDuration(voice.durationMs),
  });
  const box = el("div", { className: "voice-note", testid: "voice-note", attrs: { "data-state": "idle" } });
  box.append(play, waveform, length);
  let audio: HTMLAudioElement | null = null;
  const show = (seconds: number, duration: number): void => {
    const fraction = duration > 0 ? Math.min(1, seconds / duration) : 0;
    bars.forEach((bar, i) => bar.classList.toggle("played", i < Math.round(fraction * bars.length)));
    waveform.setAttribute("aria-valuenow", String(Math.round(seconds)));
    box.dataset.playedMs = String(Math.round(seconds * 1000));
    if (audio) length.textContent = `${formatDuration(seconds * 1000)} / ${formatDuration(duration * 1000 || total)}`;
  };
  play.addEventListener("click", () => {
    if (!messenger) return;
    if (audio && !audio.paused) {
      audio.pause();
      return;
    }
    const start = async (): Promise<void> => {
      if (!audio) {
        audio = new Audio(await messenger.mediaUrl(message, () => undefined));
        const current = audio;
        current.addEventListener("timeupdate", () => show(current.currentTime, current.duration || total / 1000));
        current.addEventListener("play", () => {
          box.dataset.state = "playing";
          play.textContent = "⏸";
          play.setAttribute("aria-label", "Pause voice note");
        });
        current.addEventListener("pause", () => {
          box.dataset.state = current.ended ? "ended" : "paused";
          play.textContent = "▶";
          play.setAttribute("aria-label", "Play voice note");
        });
      }
      await audio.play();
    };
    start().catch((error: unknown) => {
      box.dataset.state = "error";
      length.textContent = `⚠ ${describe(error)}`;
    });
  });
  return box;
}
