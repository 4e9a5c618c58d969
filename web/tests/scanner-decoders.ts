/**
 * The decoders the phone scanner's ZXing decoder was measured against (test build only): jsQR as the
 * scanner first used it, and jsQR again on a contrast-stretched, 2×2-averaged copy (less sensor noise,
 * a wider grey range) when the first pass finds nothing.
 */
import jsQR from "jsqr";
import type { QrDecoder } from "../src/pages/primary/qrDecoders";

export const jsqrDecoder: QrDecoder = {
  name: "jsQR",
  ready: () => Promise.resolve(),
  decode: (frame) => Promise.resolve(jsqrRead(frame)),
};

export const jsqrPreprocessedDecoder: QrDecoder = {
  name: "jsQR + preprocessing",
  ready: () => Promise.resolve(),
  decode: (frame) => Promise.resolve(jsqrRead(frame) ?? jsqrRead(stretchContrast(halve(frame)))),
};

function jsqrRead(frame: ImageData): string | null {
  return jsQR(frame.data, frame.width, frame.height, { inversionAttempts: "dontInvert" })?.data ?? null;
}

/** Averages each 2×2 block: half the size, a quarter of the sensor noise's variance. */
function halve(frame: ImageData): ImageData {
  const width = frame.width >> 1;
  const height = frame.height >> 1;
  const out = new ImageData(width, height);
  const source = frame.data;
  const stride = frame.width * 4;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * 2 * stride + x * 8;
      const grey =
        (luma(source, i) + luma(source, i + 4) + luma(source, i + stride) + luma(source, i + stride + 4)) / 4;
      const o = (y * width + x) * 4;
      out.data[o] = out.data[o + 1] = out.data[o + 2] = grey;
      out.data[o + 3] = 255;
    }
  }
  return out;
}

/** Stretches the grey levels between the 2nd and 98th percentiles to the full range (dim, flat pictures). */
function stretchContrast(frame: ImageData): ImageData {
  const data = frame.data;
  const histogram = new Uint32Array(256);
  for (let i = 0; i < data.length; i += 4) histogram[luma(data, i)]! += 1;
  const pixels = data.length / 4;
  const low = percentile(histogram, pixels * 0.02);
  const high = percentile(histogram, pixels * 0.98);
  if (high - low < 8) return frame;
  const scale = 255 / (high - low);
  for (let i = 0; i < data.length; i += 4) {
    const value = Math.max(0, Math.min(255, (luma(data, i) - low) * scale));
    data[i] = data[i + 1] = data[i + 2] = value;
  }
  return frame;
}

function percentile(histogram: Uint32Array, count: number): number {
  let seen = 0;
  for (let level = 0; level < 256; level++) {
    seen += histogram[level]!;
    if (seen >= count) return level;
  }
  return 255;
}

function luma(data: Uint8ClampedArray, i: number): number {
  return (data[i]! * 77 + data[i + 1]! * 150 + data[i + 2]! * 29) >> 8;
}
