#!/usr/bin/env bash
# Prepares, on a build machine (no GPU needed), what a GPU run carries besides the checkout so that
# scripts/gpu-verify.sh can also run the Node smoke test there: the addon built with CUDA
# (build/Release/calmoe.node, static CUDA runtime), the compiled TypeScript (dist/) and this
# machine's node binary compressed (.tools/node.xz, about 24 MB), and the CUDA tests and benchmark
# built for the card (.tools/gpu-bin.tar.xz, CALMOE_CUDA_ARCHS, default 90), which gpu-verify.sh
# runs only if its own build fails there. Then, with the device tool:
#   carry: ["build/Release/calmoe.node", "dist", ".tools"]   command: scripts/gpu-verify.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nvcc > /dev/null || { echo "prepare-carry: nvcc not found: the addon would have no CUDA backend" >&2; exit 1; }
CALMOE_CUDA=ON node scripts/build-native.mjs
npx tsc -p tsconfig.json
mkdir -p .tools
xz -T0 -9 -c "$(command -v node)" > .tools/node.xz
cmake -S . -B build-gpu-carry -DCALMOE_BUILD_TESTS=ON -DCALMOE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CALMOE_CUDA_ARCHS:-90}" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build-gpu-carry -j "$(nproc)" > /dev/null
# every executable embeds the same ~8 MB of device code: one xz stream with a dictionary larger
# than the whole tar stores it about once (9 MB here, against 44 MB with tar -J's 8 MiB window,
# which would push the carry past its 64 MiB)
(cd build-gpu-carry && tar -cf - calmoe_bench cuda_parity_test ./*_cuda_test | xz -T1 --lzma2=preset=9,dict=192MiB > ../.tools/gpu-bin.tar.xz)
du -sh build/Release/calmoe.node dist .tools/node.xz .tools/gpu-bin.tar.xz
