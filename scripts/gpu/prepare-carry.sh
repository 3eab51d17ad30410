#!/usr/bin/env bash
# Prepares, on a build machine (no GPU needed), what a GPU run carries besides the checkout so that
# scripts/gpu-verify.sh can also run the Node smoke test there: the addon built with CUDA
# (build/Release/calmoe.node, static CUDA runtime), the compiled TypeScript (dist/) and this
# machine's node binary compressed (.tools/node.xz, about 24 MB). Then, with the device tool:
#   carry: ["build/Release/calmoe.node", "dist", ".tools/node.xz"]   command: scripts/gpu-verify.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nvcc > /dev/null || { echo "prepare-carry: nvcc not found: the addon would have no CUDA backend" >&2; exit 1; }
CALMOE_CUDA=ON node scripts/build-native.mjs
npx tsc -p tsconfig.json
mkdir -p .tools
xz -T0 -9 -c "$(command -v node)" > .tools/node.xz
du -sh build/Release/calmoe.node dist .tools/node.xz
