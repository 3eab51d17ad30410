import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../src/index.js';

// backendInfo().cudaGemm: which GEMM runs the CUDA backend's TF32/BF16 precisions. cuBLASLt is
// looked for once per process, so the environment cases run in child processes.
function cudaGemmWith(env: Record<string, string>): unknown {
  const script = `import('./dist/index.js').then((m) => console.log(JSON.stringify(m.backendInfo().cudaGemm)));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script],
    { cwd: new URL('..', import.meta.url), env: { ...process.env, ...env } });
  return JSON.parse(out.toString().trim());
}

describe('backendInfo().cudaGemm', () => {
  const info = backendInfo();

  it('is null without the CUDA backend, else names the library and says why when it is not cuBLASLt', () => {
    if (!info.cudaCompiled) {
      expect(info.cudaGemm).toBeNull();
      return;
    }
    const g = info.cudaGemm!;
    expect(['cublaslt', 'calmoe']).toContain(g.library);
    expect(g.fallbacks).toBeGreaterThanOrEqual(0);
    if (g.library === 'calmoe') expect(g.reason).toMatch(/\S/);
    else {
      expect(g.reason).toBeNull();
      expect(g.path).toMatch(/libcublasLt\.so\.1[23]/);
      expect(g.version).toMatch(/^1[23]\.\d+\.\d+$/);
    }
  });

  it('CALMOE_CUBLASLT=off turns cuBLASLt off, and says so', () => {
    if (!info.cudaCompiled) return;
    expect(cudaGemmWith({ CALMOE_CUBLASLT: 'off' })).toMatchObject({ library: 'calmoe', reason: 'CALMOE_CUBLASLT=off', path: null });
  });

  it('a CALMOE_CUBLASLT that is no library is refused with the path and why, never used', () => {
    if (!info.cudaCompiled) return;
    const g = cudaGemmWith({ CALMOE_CUBLASLT: '/nonexistent/libcublasLt.so.13' }) as { library: string; reason: string };
    expect(g.library).toBe('calmoe');
    expect(g.reason).toContain('/nonexistent/libcublasLt.so.13 (CALMOE_CUBLASLT)');
    expect(g.reason).toMatch(/CALMOE_CUBLASLT=\/path\/to\/libcublasLt\.so\.13/);
  });
});
