/** Small helpers the apt and Python parts share. */

/** A whole stream's bytes. */
export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The last non-empty lines of a tool's output, on one line, for an error message. */
export function lastLines(text: string, count = 4, maxChars = 800): string {
  return text
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .slice(-count)
    .join(" / ")
    .slice(0, maxChars);
}
