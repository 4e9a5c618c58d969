// Test-only entry (dist-test/, never shipped): runs the phone scanner's QR decoders over camera frames the
// test hands in as PNG bytes, timing each decode (tests/web/test_web_scanner.py, bench/scanner_decoders.py).
import { zxingDecoder } from "../src/pages/primary/qrDecoders";
import { jsqrDecoder, jsqrPreprocessedDecoder } from "./scanner-decoders";

const DECODERS = [jsqrDecoder, jsqrPreprocessedDecoder, zxingDecoder];

export interface Reading {
  text: string | null;
  /** The median and the fastest of the repeats (other work on the machine only ever adds time). */
  ms: number;
  bestMs: number;
}

async function frameOf(png: string): Promise<ImageData> {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw new Error("no 2d context");
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

/** Decodes each frame (base64 PNG) `repeats` times with the named decoder, timing each decode. */
async function run(name: string, pngs: string[], repeats: number): Promise<Reading[]> {
  const decoder = DECODERS.find((d) => d.name === name);
  if (!decoder) throw new Error(`no decoder ${name}`);
  await decoder.ready();
  const frames = await Promise.all(pngs.map(frameOf));
  const readings: Reading[] = [];
  for (const frame of frames) {
    const times: number[] = [];
    let text: string | null = null;
    for (let i = 0; i < repeats; i++) {
      // Each decode gets its own copy: preprocessing may write into the frame it is given.
      const copy = new ImageData(new Uint8ClampedArray(frame.data), frame.width, frame.height);
      const start = performance.now();
      text = await decoder.decode(copy);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    readings.push({ text, ms: times[times.length >> 1]!, bestMs: times[0]! });
  }
  return readings;
}

declare global {
  interface Window {
    scannerBench: { decoders: string[]; run: typeof run };
  }
}
window.scannerBench = { decoders: DECODERS.map((d) => d.name), run };
