#!/usr/bin/env python3
"""The launches of one training step, from an emulator log (EMU_LAUNCH_LOG or EMU_DRY_RUN, see
README.md) of a run that repeats the same step at least twice: the last step is the longest tail of
the log that the log repeats right before it (the warm-up step allocates, so --repeat 2). Prints each launch with its blocks, threads, dynamic
shared memory and waves on a card of EMU_SMS multiprocessors (resident blocks bounded by shared
memory and threads only: registers are not in the log), the step's copies and memsets, and the
run's peak of device memory.

    EMU_SMS=132 EMU_CC_MAJOR=9 EMU_DRY_RUN=1 build-cuda-emu/calmoe_bench w1l --device cuda \\
        --repeat 2 --modes top1 --cuda-gemm tf32 2> top1.log
    python3 tools/cuda-emu/launch_audit.py top1.log --sms 132
"""
import argparse, math, sys

SMEM_PER_SM = 228 * 1024      # sm_90: 228 KB per SM, 227 KB of it for one block (1 KB reserved per block)
THREADS_PER_SM, BLOCKS_PER_SM = 2048, 32


def last_step(events):
    """The longest tail that repeats immediately before itself (the timed step after the warm-up)."""
    n = len(events)
    for length in range(n // 2, 0, -1):
        if events[n - length:] == events[n - 2 * length:n - length]:
            return events[n - length:]
    sys.exit('launch_audit: no step repeats in the log (run the benchmark with --repeat 2 or more: the warm-up step differs)')


def resident(threads, shmem):
    by_smem = BLOCKS_PER_SM if shmem == 0 else SMEM_PER_SM // (shmem + 1024)
    return max(1, min(BLOCKS_PER_SM, THREADS_PER_SM // threads, by_smem))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('log')
    ap.add_argument('--sms', type=int, default=132, help='multiprocessors of the card (EMU_SMS of the run)')
    args = ap.parse_args()
    lines = [line.split() for line in open(args.log) if line.startswith('emu-')]
    events = [e for e in lines if e[0] != 'emu-device-memory']
    peak = [int(e[2]) for e in lines if e[0] == 'emu-device-memory']
    step = last_step(events)
    kinds = {0: 'host to host', 1: 'host to device', 2: 'device to host', 3: 'device to device', 4: 'default'}
    launches = copies = 0
    print(f'{"kernel":58} {"blocks":>8} {"threads":>7} {"smem KB":>8} {"waves":>7}')
    for e in step:
        if e[0] == 'emu-launch':
            name, blocks, threads, shmem = ' '.join(e[1:-3]), int(e[-3]), int(e[-2]), int(e[-1])
            waves = blocks / (args.sms * resident(threads, shmem))
            note = '  < 1 wave' if waves < 1 else ''
            print(f'{name:58} {blocks:8d} {threads:7d} {shmem / 1024:8.1f} {waves:7.2f}{note}')
            launches += 1
        elif e[0] == 'emu-copy':
            print(f'  copy, {kinds.get(int(e[1]), e[1])}: {int(e[2])} bytes')
            copies += int(e[2])
        elif e[0] == 'emu-memset':
            print(f'  memset: {int(e[1])} bytes')
            copies += int(e[1])
    memory = f'; device memory at its peak {peak[-1] / 2**30:.2f} GiB' if peak else ''
    print(f'{launches} launches per step; {copies / 1e6:.1f} MB copied or set{memory}')


if __name__ == '__main__':
    main()
