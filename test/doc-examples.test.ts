// The documentation's TypeScript examples type-check against the library's sources, so they
// cannot drift from the API (a renamed option or a changed result field fails here): the README's
// ```ts blocks and every `@example` of the doc comments in src/ (what an editor shows on hover).
// Each example is compiled as its own module, all in one program (the library is checked once).
// The names an example takes from the prose around it (the user's data, an earlier result) are
// declared: for the README once, globally (README_GLOBALS); for a doc comment by its file
// (PRELUDES), typed from the API where possible, and the file's own exports are imported.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const lib = "import('../src/index.js')";

const README_GLOBALS = `
declare const features: Float32Array;
declare const rows: number;
declare const labels: Int32Array;
declare const xVal: ${lib}.MatrixInput;
declare const yVal: Int32Array;
declare const xTest: ${lib}.MatrixInput;
declare const yTest: Int32Array;
declare const logits: number[][];
declare const groupOfEachRow: Int32Array;
declare const fromAnotherWorker: string;
declare const perExampleLoss: Float32Array;
declare const valLogits: number[][];
declare const valLabels: Int32Array;
declare const testLogits: number[][];
declare const mixtureProbs: number[][];
declare const weights: number[];
declare const B: number, K: number, C: number;
declare const expertLogits: Float32Array, top2Logits: Float32Array, top2Weights: Float32Array, top2Ids: Int32Array;
declare const routing: Float32Array;
declare const r: Float32Array, P: Float32Array, p: Float32Array;
declare const temperatures: Float64Array;
declare const regionOfEachRow: Int32Array;
declare const idProbs: number[][], idLabels: Int32Array, shiftProbs: number[][], shiftLabels: Int32Array;
declare const a: Awaited<ReturnType<typeof ${lib}.audit.moeAudit>>;
declare const model: ${lib}.MoEClassifier;
declare const x: ${lib}.MatrixInput;
`;

// A README block without imports takes the library's namespaces by name.
const README_IMPORTS = "import { MoEClassifier, matrix, metrics, losses, calibrate, audit, report, drift, backendInfo } from '../src/index.js';\n";

// Per source file (relative to src/): what its examples take from around them.
const outputs = (f: string) =>
  `type Outputs = Parameters<typeof ${f}>[0];\ndeclare const routing: Outputs['routing'], expertProbs: Outputs['expertProbs'], mixture: Outputs['mixture'], labels: Outputs['labels'];\n`;
const PRELUDES: Record<string, string> = {
  'audit/expert-audit.ts': outputs('expertAuditSync') + 'declare const temperatures: Float64Array;\n',
  'audit/hard-subsets.ts': outputs('hardSubsetsSync') + 'declare const regionOfEachRow: Int32Array;\n',
  'audit/moe-audit.ts': outputs('moeAuditSync') + 'declare const temperatures: Float64Array;\n',
  'audit/routing-stats.ts': 'declare const routing: number[][];\n',
  'audit/row-audit.ts': outputs('rowAuditSync'),
  'calibrate/expert-temperatures.ts':
    "import { expertTensor } from '../src/audit/moe-outputs.js';\n" +
    'declare const logits: Float32Array, top2Logits: Float32Array, B: number, K: number, C: number;\n' +
    'declare const routing: number[][], top2Weights: number[][], top2Ids: Int32Array, labels: Int32Array;\n',
  'calibrate/temperature.ts':
    'declare const logits: number[][], labels: Int32Array, valLogits: number[][], valLabels: Int32Array, testLogits: number[][];\n',
  'drift/ks.ts': 'declare const reference: number[][], current: number[][];\n',
  'drift/monitor.ts': 'declare const trainingFeatures: number[][], batch: number[][];\ndeclare function send(s: string): void;\n',
  'drift/psi.ts': 'declare const reference: number[][], current: number[][];\n',
  'drift/report.ts': 'declare const reference: number[][], current: number[][], featureNames: string[];\n',
  'index.ts': 'declare const probs: number[][], labels: Int32Array;\n',
  'losses/tilted.ts': 'declare const losses: Float32Array;\n',
  'metrics/calibration.ts':
    'declare const probs: number[][], labels: Int32Array, regionOfEachRow: Int32Array, received: string;\n' +
    'declare const batches: AsyncIterable<{ probs: number[][]; labels: Int32Array }>;\n',
  'moe/classifier.ts': 'declare const model: MoEClassifier, x: number[][], y: Int32Array, xVal: number[][], yVal: Int32Array;\n',
  'report/histogram-svg.ts': `declare const audit: ReturnType<typeof ${lib}.audit.moeAuditSync>;\n`,
  'report/html-report.ts':
    "import { calibrationTable } from '../src/report/report-tables.js';\n" +
    `declare const a: ${lib}.metrics.CalibrationReport, b: ${lib}.metrics.CalibrationReport;\n`,
  'report/reliability-diagram.ts': "import { metrics } from '../src/index.js';\ndeclare const probs: number[][], labels: Int32Array;\n",
  'report/reliability-svg.ts':
    "import { writeFileSync } from 'node:fs';\nimport { metrics } from '../src/index.js';\n" +
    `declare const probs: number[][], labels: Int32Array, a: ${lib}.metrics.CalibrationReport, b: ${lib}.metrics.CalibrationReport;\n`,
  'report/report-tables.ts':
    "import { htmlReport } from '../src/report/html-report.js';\nimport { moeAuditSync } from '../src/audit/moe-audit.js';\n" +
    `declare const a: ${lib}.metrics.CalibrationReport, b: ${lib}.metrics.CalibrationReport;\n` +
    'declare const outputs: Parameters<typeof moeAuditSync>[0];\n',
};

interface Example {
  name: string;  // where it is, for the test's title
  path: string;  // the module it is compiled as
  text: string;
}

function readmeExamples(): Example[] {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```ts') continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() !== '```') j++;
    const code = lines.slice(i + 1, j).join('\n').replace(/from 'calmoe'/g, "from '../src/index.js'");
    out.push({ name: `README.md line ${i + 2}`, path: join(root, 'test', `__doc_readme_${out.length}.ts`),
      text: (/^import /m.test(code) ? '' : README_IMPORTS) + code + '\nexport {};\n' });
    i = j;
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

// The @example blocks of a file's doc comments, each with the file's value exports imported.
function docExamples(): Example[] {
  const out: Example[] = [];
  for (const file of sourceFiles(join(root, 'src'))) {
    const rel = relative(join(root, 'src'), file).split('\\').join('/');
    const src = readFileSync(file, 'utf8');
    const lines = src.split('\n');
    const exported = [...src.matchAll(/^export (?:async )?(?:function|const|class) (\w+)/gm)].map((m) => m[1]);
    const prelude = PRELUDES[rel] ?? '';
    const own = exported.filter((n) => !new RegExp(`\\b${n}\\b`).test(prelude.split('\n').filter((l) => l.startsWith('import')).join('\n')));
    const importOwn = own.length ? `import { ${own.join(', ')} } from '../src/${rel.replace(/\.ts$/, '.js')}';\n` : '';
    for (let i = 0; i < lines.length; i++) {
      if (!/^\s*\*\s*@example/.test(lines[i])) continue;
      const body: string[] = [];
      let j = i + 1;
      for (; j < lines.length && !/^\s*\*\//.test(lines[j]) && !/^\s*\*\s*@\w/.test(lines[j]); j++) body.push(lines[j].replace(/^\s*\* ?/, ''));
      const code = body.join('\n').replace(/from 'calmoe'/g, "from '../src/index.js'");
      // an example with its own imports (index.ts) stands alone
      const head = /^import /m.test(code) ? prelude.replace(/^import .*\n/gm, '') : importOwn + prelude;
      out.push({ name: `src/${rel} line ${i + 1}`, path: join(root, 'test', `__doc_${out.length}.ts`), text: head + code + '\nexport {};\n' });
      i = j;
    }
  }
  return out;
}

// One program over every example; the diagnostics of each example's module.
function typeCheck(examples: Example[]): Map<string, string[]> {
  const files = new Map<string, string>([[join(root, 'test', '__doc_globals.d.ts'), README_GLOBALS]]);
  for (const e of examples) files.set(e.path, e.text);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host), fileExists = host.fileExists.bind(host), getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (f) => files.get(resolve(f)) ?? readFile(f);
  host.fileExists = (f) => files.has(resolve(f)) || fileExists(f);
  host.getSourceFile = (f, lang, onError, create) => {
    const text = files.get(resolve(f));
    return text !== undefined ? ts.createSourceFile(f, text, lang) : getSourceFile(f, lang, onError, create);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  const out = new Map<string, string[]>();
  for (const f of files.keys()) {
    const sf = program.getSourceFile(f)!;
    out.set(f, [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)].map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      const at = d.file ? d.file.text.split('\n')[line - 1]?.trim() : '';
      return `${ts.flattenDiagnosticMessageText(d.messageText, '\n')}  (at: ${at})`;
    }));
  }
  return out;
}

describe('documentation examples', () => {
  const readme = readmeExamples(), doc = docExamples();
  const diags = typeCheck([...readme, ...doc]);
  it('finds the examples (the README has 6 ts blocks or more; src has 25 @examples or more)', () => {
    expect(readme.length).toBeGreaterThanOrEqual(6);
    expect(doc.length).toBeGreaterThanOrEqual(25);
  });
  it('declares the README placeholders without errors', () => {
    expect(diags.get(join(root, 'test', '__doc_globals.d.ts'))).toEqual([]);
  });
  for (const e of [...readme, ...doc]) {
    it(`${e.name} type-checks against src/`, () => {
      expect(diags.get(e.path)).toEqual([]);
    });
  }
});
