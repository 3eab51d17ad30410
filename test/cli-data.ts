// The data the CLI tests (and the README's quick start) run on: three classes of flowers with
// four measurements; test.csv shifts petal_length, which `calmoe drift` should find.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function writeFlowers(dir: string): void {
  let s = 7;
  const r = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const g = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const kinds = ['setosa', 'versicolor', 'virginica'];
  const rows = (n: number, shift: number) => {
    const out = ['sepal_length,sepal_width,petal_length,petal_width,species'];
    for (let i = 0; i < n; i++) {
      const k = i % 3;
      const v = [5 + k + g() * 0.6, 3 - 0.3 * k + g() * 0.4, 1.5 + 2 * k + g() * 0.7 + shift, 0.3 + 0.8 * k + g() * 0.3];
      out.push(`${v.map((x) => x.toFixed(2)).join(',')},${kinds[k]}`);
    }
    return out.join('\n') + '\n';
  };
  writeFileSync(join(dir, 'train.csv'), rows(600, 0));
  writeFileSync(join(dir, 'val.csv'), rows(150, 0));
  writeFileSync(join(dir, 'test.csv'), rows(300, 0.8));
}
