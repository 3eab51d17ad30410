// The README's TypeScript examples type-check against the library's sources, so the documentation
// cannot drift from the API (a renamed option or a changed result field fails here). Each ```ts
// block is compiled as its own module; the names a block takes from the prose around it (the
// user's data, results of an earlier block) are declared once in GLOBALS below.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const lib = "import('../src/index.js')";

// The placeholders of the README's examples, with the types a user would have for them.
const GLOBALS = `
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
`;

// A block without imports takes every export of the library by name.
const ALL = "import { MoEClassifier, matrix, metrics, losses, calibrate, audit, report, drift, backendInfo } from '../src/index.js';\n";

function readmeBlocks(): { line: number; code: string }[] {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  const blocks: { line: number; code: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```ts') continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j].trim() !== '```') j++;
    blocks.push({ line: start + 1, code: lines.slice(start, j).join('\n') });
    i = j;
  }
  return blocks;
}

// Compiles the blocks together (one program: the library is checked once) and returns the
// diagnostics of each block's file.
function typeCheck(blocks: { line: number; code: string }[]): Map<string, string[]> {
  const files = new Map<string, string>();
  files.set(join(root, 'test', '__readme_globals.d.ts'), GLOBALS);
  blocks.forEach((b, k) => {
    const code = b.code.replace(/from 'calmoe'/g, "from '../src/index.js'");
    files.set(join(root, 'test', `__readme_${k}.ts`), (/^import /m.test(code) ? '' : ALL) + code + '\nexport {};\n');
  });
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
    noUnusedLocals: false,
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
    const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    out.set(f, diags.map((d) => {
      const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      return `line ${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    }));
  }
  return out;
}

describe('README examples', () => {
  const blocks = readmeBlocks();
  it('has the examples this test checks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
  });
  const diags = typeCheck(blocks);
  it('declares its placeholders without errors', () => {
    expect(diags.get(join(root, 'test', '__readme_globals.d.ts'))).toEqual([]);
  });
  blocks.forEach((b, k) => {
    it(`the block at README.md line ${b.line} type-checks against src/`, () => {
      // a block without imports got one line in front: its lines are shifted by one
      expect(diags.get(join(root, 'test', `__readme_${k}.ts`))).toEqual([]);
    });
  });
});
