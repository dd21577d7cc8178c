// multipart/related bodies (DICOMweb frames and bulk pixel data), split into their parts.

export interface Part {
  headers: Record<string, string>;
  body: Uint8Array;
}

const HEADER_END = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (
    let i = haystack.indexOf(first, from);
    i !== -1 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Split a multipart/related body. Uses each part's Content-Length when present (fast path). */
export function parseMultipart(body: Uint8Array, contentType: string): Part[] {
  const boundary = contentType.match(/boundary="?([^";]+)"?/i)?.[1];
  if (!boundary) throw new Error("multipart response without boundary");
  const delimiter = new TextEncoder().encode(`--${boundary}`);
  const closing = new TextEncoder().encode(`\r\n--${boundary}`);
  const decoder = new TextDecoder();
  const parts: Part[] = [];
  let pos = indexOf(body, delimiter, 0);
  while (pos !== -1) {
    pos += delimiter.length;
    if (body[pos] === 45 && body[pos + 1] === 45) break; // "--": the closing delimiter
    const headerEnd = indexOf(body, HEADER_END, pos);
    if (headerEnd === -1) break;
    const headers: Record<string, string> = {};
    for (const line of decoder.decode(body.subarray(pos, headerEnd)).split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0)
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const start = headerEnd + 4;
    const length = Number(headers["content-length"]);
    const end =
      Number.isFinite(length) && length >= 0 ? start + length : indexOf(body, closing, start);
    if (end < 0) break;
    parts.push({ headers, body: body.subarray(start, end) });
    pos = indexOf(body, delimiter, end);
  }
  return parts;
}
