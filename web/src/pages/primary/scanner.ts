/** Camera + QR decoder: opens the back camera (non-exact facingMode, which also works with fake cameras)
 * and resolves with the text of the first QR code it finds ("" when its bytes are not UTF-8). The decoder
 * is ZXing's WebAssembly build (qrDecoders.ts says why), fed about 8 frames a second. */
import { type QrDecoder, zxingDecoder } from "./qrDecoders";

export class CameraError extends Error {
  override name = "CameraError";
}

const MAX_WIDTH = 800;
const INTERVAL_MS = 120;

export class Scanner {
  private stream: MediaStream | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private video: HTMLVideoElement,
    private decoder: QrDecoder = zxingDecoder,
  ) {}

  async scan(): Promise<string> {
    // Absent outside secure contexts, whatever the DOM types say.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    if (!navigator.mediaDevices?.getUserMedia)
      throw new CameraError("This browser cannot use the camera here. The camera needs a secure (https) connection.");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (error) {
      const name = error instanceof DOMException ? error.name : "";
      if (name === "NotAllowedError" || name === "SecurityError")
        throw new CameraError("Camera access was denied. Allow the camera for Lockstep to scan the code.");
      if (name === "NotFoundError" || name === "OverconstrainedError")
        throw new CameraError("No camera was found on this device.");
      throw new CameraError("The camera could not be started.");
    }
    if (this.stopped) {
      this.stop();
      throw new CameraError("Scanning was cancelled.");
    }
    // The decoder's WebAssembly loads while the camera starts; a decoder that cannot load is a camera problem.
    const ready = this.decoder.ready().catch(() => {
      throw new CameraError("The code reader could not be loaded. Reload the page and try again.");
    });
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => undefined);
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new CameraError("The camera image could not be read.");
    try {
      await ready;
    } catch (error) {
      this.stop();
      throw error;
    }
    return new Promise((resolve, reject) => {
      const step = async (): Promise<void> => {
        if (this.stopped) {
          reject(new CameraError("Scanning was cancelled."));
          return;
        }
        const { videoWidth, videoHeight } = this.video;
        if (this.video.readyState >= 2 && videoWidth > 0) {
          const scale = Math.min(1, MAX_WIDTH / videoWidth);
          canvas.width = Math.round(videoWidth * scale);
          canvas.height = Math.round(videoHeight * scale);
          ctx.drawImage(this.video, 0, 0, canvas.width, canvas.height);
          const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
          const text = await this.decoder.decode(image).catch(() => null);
          // stop() may have run while the frame was being decoded.
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
          if (this.stopped) {
            reject(new CameraError("Scanning was cancelled."));
            return;
          }
          if (text !== null) {
            // Any QR code ends the scan, even one whose bytes are not UTF-8 text (then ""): the linking
            // decoder names it "not a Lockstep linking code" rather than the camera going on silently.
            this.stop();
            resolve(text);
            return;
          }
        }
        this.timer = setTimeout(() => void step(), INTERVAL_MS);
      };
      void step();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }
}
