/** Camera + jsQR: opens the back camera (non-exact facingMode, which also works with fake cameras) and
 * resolves with the text of the first QR code it finds ("" when its bytes are not UTF-8). */
import jsQR from "jsqr";

export class CameraError extends Error {
  override name = "CameraError";
}

const MAX_WIDTH = 800;
const INTERVAL_MS = 120;

export class Scanner {
  private stream: MediaStream | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(private video: HTMLVideoElement) {}

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
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => undefined);
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new CameraError("The camera image could not be read.");
    return new Promise((resolve, reject) => {
      const step = (): void => {
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
          const code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
          if (code) {
            // Any QR code ends the scan, even one whose bytes are not UTF-8 text (jsQR then gives ""):
            // the decoder names it "not a Lockstep linking code" rather than the camera going on silently.
            this.stop();
            resolve(code.data);
            return;
          }
        }
        this.timer = setTimeout(step, INTERVAL_MS);
      };
      step();
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
