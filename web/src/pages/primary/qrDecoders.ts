/**
 * The phone scanner's QR decoder: ZXing-C++ compiled to WebAssembly (zxing-wasm's reader build, the
 * library the terminal companion reads codes with through zxing-cpp), its .wasm an asset of our own
 * build, never fetched from a CDN. On the 20 distorted frames of tests/scanner_frames.py it reads all
 * of them in a few milliseconds each, where jsQR (the first decoder here) read 16 and jsQR with
 * preprocessing 17, far slower (docs/benchmarks.md, "Phone scanner"; web/tests/scanner-harness.ts
 * holds the jsQR variants it was measured against).
 */

export interface QrDecoder {
  readonly name: string;
  /** Loads what the decoder needs (the WebAssembly module); decode() waits for it too. */
  ready(): Promise<void>;
  /** The text of the first QR code in the frame ("" when its bytes are not UTF-8), or null. */
  decode(frame: ImageData): Promise<string | null>;
}

type ZxingReader = typeof import("zxing-wasm/reader");
let zxing: Promise<ZxingReader> | null = null;

/** zxing-wasm and its .wasm, fetched the first time the camera opens (not with the app's first page). */
function loadZxing(): Promise<ZxingReader> {
  zxing ??= Promise.all([import("zxing-wasm/reader"), import("zxing-wasm/reader/zxing_reader.wasm?url")]).then(
    async ([reader, wasm]) => {
      await reader.prepareZXingModule({
        overrides: {
          locateFile: (path: string, prefix: string) => (path.endsWith(".wasm") ? wasm.default : prefix + path),
        },
        fireImmediately: true,
      });
      return reader;
    },
  );
  zxing.catch(() => (zxing = null)); // a failed load (e.g. offline) is tried again by the next scan
  return zxing;
}

export const zxingDecoder: QrDecoder = {
  name: "ZXing (WebAssembly)",
  ready: () => loadZxing().then(() => undefined),
  async decode(frame) {
    const reader = await loadZxing();
    // tryHarder: the slower, more thorough search (rotation, more binarizer passes): still a few ms a frame.
    const [result] = await reader.readBarcodes(frame, { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 });
    if (!result) return null;
    // Any QR code ends the scan, even one whose bytes are not UTF-8 text: the linking decoder then names
    // it "not a Lockstep linking code" rather than the camera going on silently.
    return utf8(result.bytes);
  },
};

function utf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return "";
  }
}
