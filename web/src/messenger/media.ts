/**
 * Media encryption (messaging.md §9, WhatsApp's scheme) on WebCrypto, and the HTTP transfer of blobs.
 *
 *   media_key (32 random bytes) --HKDF-SHA256(info by type, L = 112)--> iv ‖ cipher_key ‖ mac_key ‖ unused
 *   blob = AES-256-CBC(cipher_key, iv, PKCS#7(file)) ‖ HMAC-SHA256(mac_key, iv ‖ ciphertext)[0:10]
 *
 * A blob is kept only if its length and SHA-256, the MAC, the padding and the file's SHA-256 all match.
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { buf, concat, equalBytes, randomBytes, utf8 } from "../crypto/bytes";
import { refusalText } from "../net/refusals";

export type MediaKind = "image" | "video" | "audio" | "document";

const INFO: Record<MediaKind, string> = {
  image: "WhatsApp Image Keys",
  video: "WhatsApp Video Keys",
  audio: "WhatsApp Audio Keys",
  document: "WhatsApp Document Keys",
};
const MAC_LENGTH = 10;

/** The media descriptor carried inside the E2E `media` envelope (§9.2). */
export interface MediaDescriptor {
  media_id: string;
  type: MediaKind;
  mimetype: string;
  name: string;
  media_key: string;
  file_sha256: string;
  file_enc_sha256: string;
  file_length: number;
  enc_length: number;
}

export class MediaError extends Error {
  override name = "MediaError";
}

export function kindForMimetype(mimetype: string): MediaKind {
  const major = mimetype.split("/", 1)[0];
  return major === "image" || major === "video" || major === "audio" ? major : "document";
}

export function encryptedSize(fileLength: number): number {
  return (Math.floor(fileLength / 16) + 1) * 16 + MAC_LENGTH;
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf(data)));
}

async function expand(
  mediaKey: Uint8Array,
  kind: MediaKind,
): Promise<{ iv: Uint8Array; cipher: CryptoKey; mac: CryptoKey }> {
  const ikm = await crypto.subtle.importKey("raw", buf(mediaKey), "HKDF", false, ["deriveBits"]);
  const bits = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new ArrayBuffer(0), info: buf(utf8(INFO[kind])) },
      ikm,
      112 * 8,
    ),
  );
  const cipher = await crypto.subtle.importKey("raw", buf(bits.slice(16, 48)), { name: "AES-CBC" }, false, [
    "encrypt",
    "decrypt",
  ]);
  const mac = await crypto.subtle.importKey("raw", buf(bits.slice(48, 80)), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return { iv: bits.slice(0, 16), cipher, mac };
}

export interface EncryptedMedia {
  blob: Uint8Array;
  mediaKey: Uint8Array;
  fileSha256: Uint8Array;
  fileEncSha256: Uint8Array;
}

export async function encryptMedia(file: Uint8Array, kind: MediaKind): Promise<EncryptedMedia> {
  const mediaKey = randomBytes(32);
  const { iv, cipher, mac } = await expand(mediaKey, kind);
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv: buf(iv) }, cipher, buf(file)));
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", mac, buf(concat(iv, ciphertext)))).slice(0, MAC_LENGTH);
  const blob = concat(ciphertext, tag);
  return { blob, mediaKey, fileSha256: await sha256(file), fileEncSha256: await sha256(blob) };
}

export async function decryptMedia(blob: Uint8Array, media: MediaDescriptor): Promise<Uint8Array> {
  let key: Uint8Array;
  let fileSha: Uint8Array;
  let encSha: Uint8Array;
  try {
    key = b64uDecode(media.media_key);
    fileSha = b64uDecode(media.file_sha256);
    encSha = b64uDecode(media.file_enc_sha256);
  } catch {
    throw new MediaError("a media message without a usable key or hashes");
  }
  if (key.length !== 32 || !(media.type in INFO)) throw new MediaError("a media message without a usable key");
  if (blob.length !== media.enc_length || blob.length !== encryptedSize(media.file_length))
    throw new MediaError("the file has the wrong size");
  if (!equalBytes(await sha256(blob), encSha)) throw new MediaError("the file's hash does not match");
  const { iv, cipher, mac } = await expand(key, media.type);
  const ciphertext = blob.subarray(0, blob.length - MAC_LENGTH);
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", mac, buf(concat(iv, ciphertext)))).slice(0, MAC_LENGTH);
  if (!equalBytes(tag, blob.subarray(blob.length - MAC_LENGTH))) throw new MediaError("the file's MAC does not match");
  let file: Uint8Array;
  try {
    file = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv: buf(iv) }, cipher, buf(ciphertext)));
  } catch {
    throw new MediaError("the file's padding is wrong");
  }
  if (file.length !== media.file_length || !equalBytes(await sha256(file), fileSha))
    throw new MediaError("the decrypted file's hash does not match");
  return file;
}

export type Progress = (done: number, total: number) => void;

function errorCode(body: Record<string, unknown>): unknown {
  const error = body.error as Record<string, unknown> | undefined;
  return error?.code;
}

/** POST /media with a bearer token; XMLHttpRequest because fetch cannot report upload progress. */
export function uploadBlob(
  token: string,
  blob: Uint8Array,
  progress: Progress,
): Promise<{ media_id: string; sha256: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/media");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (event) => progress(event.loaded, event.total || blob.length);
    xhr.onload = () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(xhr.responseText) as Record<string, unknown>;
      } catch {
        /* not JSON */
      }
      if (xhr.status === 201 && typeof body.media_id === "string" && typeof body.sha256 === "string") {
        resolve({ media_id: body.media_id, sha256: body.sha256 });
      } else if (xhr.status === 413) {
        reject(new MediaError("the file is larger than this server accepts"));
      } else {
        reject(new MediaError(refusalText(errorCode(body), "messaging") ?? `the upload failed (${xhr.status})`));
      }
    };
    xhr.onerror = () => reject(new MediaError("the upload failed: connection lost"));
    xhr.send(new Blob([buf(blob)]));
  });
}

/** GET /media/{id}, streamed so the caller can show progress. */
export async function downloadBlob(
  token: string,
  mediaId: string,
  expected: number,
  progress: Progress,
): Promise<Uint8Array> {
  const response = await fetch(`/media/${encodeURIComponent(mediaId)}`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (!response.ok || !response.body)
    throw new MediaError(
      response.status === 404 ? "the file is no longer on the server" : `the download failed (${response.status})`,
    );
  const out = new Uint8Array(expected);
  let offset = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (offset + value.length > expected) {
      await reader.cancel();
      throw new MediaError("the file has the wrong size");
    }
    out.set(value, offset);
    offset += value.length;
    progress(offset, expected);
  }
  if (offset !== expected) throw new MediaError("the file has the wrong size");
  return out;
}

export function describeMedia(
  uploaded: { media_id: string; sha256: string },
  encrypted: EncryptedMedia,
  file: { name: string; type: string; size: number },
): MediaDescriptor {
  if (uploaded.sha256 !== b64uEncode(encrypted.fileEncSha256))
    throw new MediaError("the server stored different bytes than were sent");
  const mimetype = file.type || "application/octet-stream";
  return {
    media_id: uploaded.media_id,
    type: kindForMimetype(mimetype),
    mimetype,
    name: safeName(file.name),
    media_key: b64uEncode(encrypted.mediaKey),
    file_sha256: b64uEncode(encrypted.fileSha256),
    file_enc_sha256: b64uEncode(encrypted.fileEncSha256),
    file_length: file.size,
    enc_length: encrypted.blob.length,
  };
}

export function safeName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const cleaned = base.replace(/[^A-Za-z0-9._ -]/g, "_").replace(/^[ .]+|[ .]+$/g, "");
  return cleaned.slice(0, 100) || "file";
}

/** A size as the person reads it: "3 MB", "12 KB", "80 bytes". */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round(n / 1024 / 1024)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}
