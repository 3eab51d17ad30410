/**
 * W4's data (DESIGN.md): Fashion-MNIST-sized, synthetic and seeded, made as calmoe_bench's w4_data
 * makes them (native/bench/bench_main.cpp; the same recipe, not the same bits): 28 x 28 = 784
 * pixels in [0, 1], 10 classes. Each class is a template of three Gaussian blobs; a row is its
 * class's template at a random contrast (0.7..1) plus pixel noise (sd 0.25), dark pixels (< 0.05)
 * set to 0 and a 2-pixel border always 0; 10% of labels are replaced by random ones. Training
 * reaches ~90% accuracy, as on Fashion-MNIST, while confident rows' gradients become tiny (the
 * subnormal values that slowed AdamW down).
 */
import { matrix, type Matrix } from 'calmoe';

export const W4 = { side: 28, d: 784, C: 10, K: 8, h: 128, batch: 128, epochs: 15, rows: 60000 } as const;

export function fashionLikeData(rows: number, seed = 4): { x: Matrix; y: Int32Array } {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const normal = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const { side, d, C } = W4;
  const tmpl = new Float32Array(C * d);
  for (let c = 0; c < C; c++) {
    for (let b = 0; b < 3; b++) {
      const cx = 4 + 20 * u(), cy = 4 + 20 * u(), sg = 2 + 3 * u(), amp = 0.5 + 0.5 * u();
      for (let p = 0; p < d; p++) {
        const dx = (p % side) - cx, dy = Math.floor(p / side) - cy;
        tmpl[c * d + p] += amp * Math.exp(-(dx * dx + dy * dy) / (2 * sg * sg));
      }
    }
    let mx = 0;
    for (let p = 0; p < d; p++) mx = Math.max(mx, tmpl[c * d + p]);
    for (let p = 0; p < d; p++) tmpl[c * d + p] /= mx;
  }
  const x = new Float32Array(rows * d), y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const c = Math.floor(u() * C);
    y[i] = u() < 0.1 ? Math.floor(u() * C) : c;
    const contrast = 0.7 + 0.3 * u();
    for (let p = 0; p < d; p++) {
      const px = p % side, py = Math.floor(p / side);
      const v = tmpl[c * d + p] * contrast + 0.25 * normal();
      const border = px < 2 || py < 2 || px >= side - 2 || py >= side - 2;
      x[i * d + p] = border || v < 0.05 ? 0 : Math.min(v, 1);
    }
  }
  return { x: matrix(x, rows, d), y };
}
