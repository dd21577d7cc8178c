// Byte encodings of the label API: base64, gzip (browser CompressionStream) and zstd (fzstd).
import { decompress as zstdDecompress } from "fzstd";

export function base64Encode(bytes: Uint8Array): string {
  let binary = "";
  const step = 0x8000; // String.fromCharCode's argument list must stay small
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode(...bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

export function base64Decode(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export function zstd(bytes: Uint8Array): Uint8Array {
  return zstdDecompress(bytes);
}
