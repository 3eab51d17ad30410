/**
 * Shifts as importance weights on a fixed test pool, and route purity.
 *   - route shift: w = q(route) / p(route), p the model's own top-1 route mix on the pool and q
 *     that mix reversed (the most used route becomes the least used): P(y | route) is kept and
 *     only the route mix moves (the premise of the paper's theorem);
 *   - domain-heavy: one domain weighs `factor`, the others 1.
 */

/** Each row's top-1 expert from routing weights (rows x experts, row-major). */
export function topRoutes(weights: ArrayLike<number>, rows: number, experts: number): Int32Array {
  return Int32Array.from({ length: rows }, (_, i) => {
    let a = 0;
    for (let k = 1; k < experts; k++) if (weights[i * experts + k] > weights[i * experts + a]) a = k;
    return a;
  });
}

/** The route shift's weights and how many routes are in use (with one, there is no shift to make: all weights 1). */
export function routeShiftWeights(top: Int32Array, experts: number): { weights: Float32Array; routesUsed: number } {
  const n = top.length;
  const p = new Array<number>(experts).fill(0);
  for (const k of top) p[k] += 1 / n;
  const used = [...p.keys()].filter((k) => p[k] > 0).sort((a, b) => p[b] - p[a]);
  const q = new Array<number>(experts).fill(0);
  used.forEach((k, r) => (q[k] = p[used[used.length - 1 - r]]));
  return { weights: Float32Array.from(top, (k) => (p[k] > 0 ? q[k] / p[k] : 0)), routesUsed: used.length };
}

export function domainHeavyWeights(domain: Int32Array, heavy: number, factor = 3): Float32Array {
  return Float32Array.from(domain, (v) => (v === heavy ? factor : 1));
}

/** The share of each route's rows from its most common domain, averaged by load (1: routes follow domains). */
export function routePurity(top: Int32Array, domain: Int32Array, experts: number, domains: number): number {
  const counts = [...Array(experts)].map(() => new Array<number>(domains).fill(0));
  top.forEach((k, i) => counts[k][domain[i]]++);
  return counts.reduce((s, c) => s + Math.max(...c), 0) / top.length;
}
