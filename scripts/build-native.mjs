#!/usr/bin/env node
// Builds the calmoe native addon (run by `npm install` / `npm ci`).
//   CMake present  -> cmake-js: CPU backend always, CUDA backend when nvcc is found
//                     (CALMOE_CUDA=AUTO|ON|OFF, CALMOE_CUDA_ARCHS="80-real;90a-real;90-virtual").
//   no CMake       -> node-gyp with binding.gyp: CPU backend only.
// Flags: --tests (also build the native tests, for `npm run test:native`), --debug,
//        --gyp (force the node-gyp build). CALMOE_SKIP_BUILD=1 skips the build entirely.
// It says what it builds (backends, CUDA architectures, jobs, the expected time) before it starts,
// and how long it took at the end: an install that compiles for minutes should not look stuck.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const args = new Set(process.argv.slice(2));
const env = process.env;

function log(msg) {
  process.stderr.write(`calmoe: ${msg}\n`);
}

function run(cmd, cmdArgs) {
  log(`${cmd} ${cmdArgs.join(' ')}`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    log(`build failed (${cmd} exited with ${r.status}). See the output above; docs: README.md#building-from-source`);
    process.exit(r.status ?? 1);
  }
}

function hasNvcc() {
  const r = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

// node-gyp as [command, ...args]: the package's own (a development checkout), else the one npm
// bundles and names in npm_config_node_gyp while it runs install scripts (an installed package has
// no dev dependencies), else one on the PATH.
function nodeGyp() {
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch { /* not a dependency of an installed package */ }
  const candidates = [env.npm_config_node_gyp];
  if (env.npm_execpath) candidates.push(join(dirname(env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const found = candidates.find((c) => c && existsSync(c));
  if (found) return [process.execPath, found];
  const onPath = spawnSync('node-gyp', ['--version'], { encoding: 'utf8' });
  if (!onPath.error && onPath.status === 0) return ['node-gyp'];
  log('node-gyp was not found (not installed here, not bundled with this npm, not on the PATH). Install CMake >= 3.18 (preferred) ' +
    'or node-gyp (`npm install -g node-gyp`), then run `npm rebuild calmoe`.');
  process.exit(1);
}

function hasCmake() {
  const r = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return false;
  const m = /cmake version (\d+)\.(\d+)/.exec(r.stdout);
  return !!m && (Number(m[1]) > 3 || (Number(m[1]) === 3 && Number(m[2]) >= 18));
}

if (env.CALMOE_SKIP_BUILD === '1') {
  log('CALMOE_SKIP_BUILD=1: not building the native addon');
  process.exit(0);
}

const cuda = (env.CALMOE_CUDA ?? 'AUTO').toUpperCase();
if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  log(`CALMOE_CUDA must be AUTO, ON or OFF (got '${env.CALMOE_CUDA}')`);
  process.exit(1);
}
const jobs = String(Math.max(1, Number(env.CALMOE_JOBS) || availableParallelism()));
const started = Date.now();
const useCmake = !args.has('--gyp') && hasCmake();
const withCuda = useCmake && cuda !== 'OFF' && hasNvcc();
const cpuName = cpus()[0]?.model?.trim() ?? 'unknown CPU';
log(`building the native addon with ${useCmake ? 'cmake-js' : 'node-gyp'}: CPU backend${withCuda ? ` + CUDA backend (architectures ${env.CALMOE_CUDA_ARCHS ?? '75-real;80-real;90a-real;90-virtual'})` : ''}` +
  `${args.has('--tests') ? ' + native tests' : ''}, ${jobs} parallel jobs on ${cpuName}`);
log(withCuda
  ? 'expect about 1-3 minutes for the CPU part and several more minutes per CUDA architecture (CALMOE_CUDA_ARCHS=90a-real builds one; CALMOE_CUDA=OFF none)'
  : `expect about ${Number(jobs) >= 8 ? '1' : '2-5'} minutes${cuda !== 'OFF' && useCmake ? ' (nvcc not found: CPU only)' : ''}`);

if (useCmake) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const common = ['--out', 'build', `--CDCALMOE_CUDA=${cuda}`, `--CDCALMOE_BUILD_TESTS=${args.has('--tests') ? 'ON' : 'OFF'}`];
  if (args.has('--debug')) common.push('--debug');
  // Configure every time (cheap) so that changed options take effect; the build is incremental.
  run(process.execPath, [cmakeJs, 'configure', ...common]);
  run(process.execPath, [cmakeJs, 'build', ...common, '--parallel', jobs]);
} else {
  if (cuda === 'ON') {
    log('CALMOE_CUDA=ON needs CMake >= 3.18 (the node-gyp build is CPU-only). Install cmake and retry.');
    process.exit(1);
  }
  if (args.has('--tests')) {
    log('the native tests need CMake >= 3.18; install cmake to run them');
    process.exit(1);
  }
  log('CMake >= 3.18 not found (or --gyp given): building the CPU-only addon with node-gyp');
  const [gypCmd, ...gypArgs] = nodeGyp();
  gypArgs.push('rebuild', '-j', jobs);
  // Offline builds: use the headers installed with this Node.js when npm has not named a nodedir.
  const prefix = dirname(dirname(process.execPath));
  if (!env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) gypArgs.push(`--nodedir=${prefix}`);
  run(gypCmd, gypArgs);
}
if (!existsSync(join(root, 'build', 'Release', 'calmoe.node')) && !existsSync(join(root, 'build', 'Debug', 'calmoe.node'))) {
  log('the build finished but build/Release/calmoe.node is missing');
  process.exit(1);
}
log(`built the native addon in ${((Date.now() - started) / 1000).toFixed(0)} s`);
