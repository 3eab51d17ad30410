import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// The loader as published (dist/native.js), in a package directory with no built addon.
const root = mkdtempSync(join(tmpdir(), 'calmoe-loader-'));
mkdirSync(join(root, 'dist'));
copyFileSync(new URL('../dist/native.js', import.meta.url), join(root, 'dist', 'native.js'));
writeFileSync(join(root, 'package.json'), JSON.stringify({ type: 'module' }));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The sanitizer stage (scripts/sanitize-test.sh) preloads the ASan runtime: the child needs it too.
const preload = process.env.LD_PRELOAD ? { LD_PRELOAD: process.env.LD_PRELOAD } : {};

function load(env: Record<string, string>): { code?: string; message: string } {
  const script = `import('./dist/native.js').then((m) => { m.native(); console.log(JSON.stringify({ message: 'loaded' })); })
    .catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { PATH: process.env.PATH ?? '', ...preload, ...env } });
  return JSON.parse(out.toString().trim()) as { code?: string; message: string };
}

describe('native addon loader', () => {
  it('says where it looked and how to build when the addon is missing', () => {
    const r = load({});
    expect(r.code).toBe('CALMOE_ADDON_NOT_FOUND');
    expect(r.message).toMatch(/the native addon is not built/);
    expect(r.message).toContain(join(root, 'build', 'Release', 'calmoe.node'));
    expect(r.message).toMatch(/npm rebuild calmoe/);
    expect(r.message).toMatch(/CALMOE_ADDON_PATH/);
  });

  it('says why a file that is not a loadable addon fails', () => {
    const bogus = join(root, 'bogus.node');
    writeFileSync(bogus, 'not an addon');
    const r = load({ CALMOE_ADDON_PATH: bogus });
    expect(r.code).toBe('CALMOE_ADDON_NOT_FOUND');
    expect(r.message).toMatch(/failed to load/);
    expect(r.message).toMatch(/Rebuild it with `npm rebuild calmoe`/);
  });

  it('loads the addon named by CALMOE_ADDON_PATH', () => {
    const built = new URL('../build/Release/calmoe.node', import.meta.url).pathname;
    expect(load({ CALMOE_ADDON_PATH: process.env.CALMOE_ADDON_PATH ?? built }).message).toBe('loaded');
  });
});
