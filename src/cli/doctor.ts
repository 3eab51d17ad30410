/** `calmoe doctor`: what was built and what this machine offers, each missing piece with its reason. */
import { Command } from 'commander';
import { backendInfo } from '../backend.js';
import { native, packageRoot } from '../native.js';
import { VERSION } from '../version.js';
import { CliError, EXIT, output } from './common.js';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('report the backends: CPU threads and SIMD, CUDA build, GPUs, GEMM kernels, and why a GPU is not used')
    .option('--require-cuda', `exit with code ${EXIT.unavailable} unless a GPU is usable`)
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExamples:\n  $ calmoe doctor\n  $ calmoe doctor --json\n  $ calmoe doctor --require-cuda && calmoe train data.csv --label y --device cuda')
    .action((o: { requireCuda?: boolean; json?: boolean }) => {
      native();  // a missing addon is reported here, with how to build it
      const info = backendInfo();
      const gpuUsable = info.cudaCompiled && info.gpus.length > 0 && info.cudaUnavailableReason === '';
      const report = { version: VERSION, node: process.version, platform: `${process.platform}-${process.arch}`, packageRoot, gpuUsable, ...info };
      output(!!o.json, report, () => {
        const lines = [
          `calmoe ${VERSION} on Node.js ${process.version} (${process.platform}-${process.arch})`,
          `CPU backend: ${info.cpuThreads} threads, SIMD ${info.simd}, GEMM ${info.gemm}${info.blasAvailable ? ' (a BLAS is linked: CALMOE_GEMM=blas selects it)' : ' (no BLAS linked)'}`,
          `CUDA backend: ${info.cudaCompiled ? `compiled for ${info.cudaArchitectures}` : 'not compiled in (nvcc was not found at build time; rebuild with nvcc on the PATH: npm rebuild calmoe)'}`,
        ];
        for (const g of info.gpus) lines.push(`  GPU ${g.index}: ${g.name}, ${(g.memoryBytes / 2 ** 30).toFixed(1)} GiB, compute capability ${g.computeCapability}, ${g.multiprocessors} SMs`);
        if (info.cudaCompiled) lines.push(`  runtime ${info.cudaRuntimeVersion}, driver ${info.cudaDriverVersion || 'none'}`);
        lines.push(gpuUsable ? `GPU: usable; device 'auto' trains on it` : `GPU: not used${info.cudaUnavailableReason ? `: ${info.cudaUnavailableReason}` : ''}`);
        const g = info.cudaGemm;
        if (!g) lines.push('cuBLASLt: not used (no CUDA backend in this build)');
        else if (g.library === 'cublaslt') lines.push(`cuBLASLt: ${g.version} (${g.path}, found by ${g.origin}) runs the TF32/BF16 GEMMs${g.fallbacks ? `; ${g.fallbacks} GEMMs fell back to calmoe's kernel` : ''}`);
        else lines.push(`cuBLASLt: not used: ${g.reason ?? 'unknown reason'}; calmoe's own tensor-core kernel runs the TF32/BF16 GEMMs`);
        return lines.join('\n');
      });
      if (o.requireCuda && !gpuUsable) throw new CliError(`no usable GPU: ${info.cudaUnavailableReason || 'CUDA not compiled in'}`, EXIT.unavailable);
    });
}
