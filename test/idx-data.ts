// IDX bytes (the MNIST family's format) for tests that need files of it: big-endian dimensions,
// then the body as given.
export function idxBytes(type: number, shape: number[], body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * shape.length + body.length);
  out.set([0, 0, type, shape.length]);
  shape.forEach((d, i) => new DataView(out.buffer).setUint32(4 + 4 * i, d, false));
  out.set(body, 4 + 4 * shape.length);
  return out;
}
