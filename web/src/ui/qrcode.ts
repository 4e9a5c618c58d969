/** Draws a QR code (byte mode, error correction M) on a canvas: black on white with a 4-module quiet zone. */
import qrcode from "qrcode-generator";

export const QUIET_ZONE = 4;

export function drawQr(canvas: HTMLCanvasElement, text: string, targetPixels: number): void {
  const code = qrcode(0, "M");
  code.addData(text, "Byte");
  code.make();
  const modules = code.getModuleCount();
  const total = modules + 2 * QUIET_ZONE;
  const scale = Math.max(2, Math.floor(targetPixels / total));
  const size = total * scale;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = "#000000";
  for (let row = 0; row < modules; row++) {
    for (let col = 0; col < modules; col++) {
      if (code.isDark(row, col)) ctx.fillRect((col + QUIET_ZONE) * scale, (row + QUIET_ZONE) * scale, scale, scale);
    }
  }
}

export function clearQr(canvas: HTMLCanvasElement): void {
  const ctx = canvas.getContext("2d");
  ctx?.clearRect(0, 0, canvas.width, canvas.height);
  canvas.width = 0;
  canvas.height = 0;
}
