/**
 * Encrypted files in and out of the server (messaging.md §9), the twin of client/messaging/media.py: a
 * `media.token` for each transfer, the file encrypted here before it leaves and checked here after it
 * comes back (./media.ts), and the decrypted files of this page kept as blob: URLs.
 */
import type { Device } from "./device";
import { MessengerError } from "./errors";
import {
  type MediaDescriptor,
  MediaError,
  type MediaKind,
  type Progress,
  decryptMedia,
  describeMedia,
  downloadBlob,
  encryptMedia,
  encryptedSize,
  formatBytes,
  uploadBlob,
} from "./media";
import type { ChatMessage } from "./model";

/** A file to send: its bytes are read only once the server said it takes a file of its size. */
export interface OutgoingFile {
  name: string;
  type: string;
  size: number;
  read: () => Promise<Uint8Array>;
}

export class MediaTransfer {
  /** Object URLs of media this page already decrypted or sent (message id → blob: URL). */
  readonly urls = new Map<string, string>();

  constructor(private readonly device: Device) {}

  close(): void {
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
  }

  /** Encrypts and uploads a file (progress 0..1) and returns what a message says of it. */
  async upload(
    file: OutgoingFile,
    kind: MediaKind,
    progress: Progress,
  ): Promise<{ media: MediaDescriptor; bytes: Uint8Array }> {
    const token = await this.device.request("media.token");
    if (encryptedSize(file.size) > Number(token.max_bytes))
      throw new MessengerError(
        `${file.name} is too large: this server accepts up to ${formatBytes(Number(token.max_bytes))}`,
      );
    const bytes = await file.read();
    const encrypted = await encryptMedia(bytes, kind);
    const uploaded = await uploadBlob(String(token.token), encrypted.blob, progress);
    return { media: describeMedia(uploaded, encrypted, file), bytes };
  }

  async download(media: MediaDescriptor, progress: Progress): Promise<Uint8Array> {
    const token = await this.device.request("media.token");
    const blob = await downloadBlob(String(token.token), media.media_id, media.enc_length, progress);
    return decryptMedia(blob, media);
  }

  /** Keeps the URL of a file this page sent, so it shows without a download. */
  keep(messageId: string, bytes: Uint8Array, mimetype: string): void {
    this.urls.set(messageId, URL.createObjectURL(new Blob([bytes.slice().buffer], { type: mimetype })));
  }

  /** The decrypted file of a media message as a blob: URL (downloaded, checked and cached once). */
  async url(message: ChatMessage, progress: Progress): Promise<string> {
    const cached = this.urls.get(message.id);
    if (cached) return cached;
    if (!message.media) throw new MediaError("not a media message");
    const bytes = await this.download(message.media, progress);
    const url = URL.createObjectURL(new Blob([bytes.slice().buffer], { type: safeMime(message.media.mimetype) }));
    this.urls.set(message.id, url);
    return url;
  }
}

/** Only image types the browser renders safely inline keep their type; everything else is a download. */
function safeMime(mimetype: string): string {
  return /^(image\/(png|jpeg|gif|webp|avif)|video\/(mp4|webm)|audio\/(mpeg|ogg|webm|wav))$/.test(mimetype)
    ? mimetype
    : "application/octet-stream";
}
