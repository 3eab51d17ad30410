#!/usr/bin/env python3
"""Rewrites a .cu file into C++ for the CPU emulator: kernel<<<g, b[, shmem[, stream]]>>>(args)
becomes ::emu::launch("kernel", dim3(g), dim3(b), shmem, [=]() { kernel(args); }); extern __shared__ arrays
become pointers to the launch's dynamic shared memory."""
import re, sys

src = open(sys.argv[1]).read()

def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{<': depth += 1
        elif ch in ')]}>': depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]

out, i = '', 0
# a kernel name with template arguments, nested one level (kernel<Tile<2>>)
pat = re.compile(r'([A-Za-z_][\w:]*(?:<(?:[^<>;()]|<[^<>;()]*>)*>)?)\s*<<<')
while True:
    m = pat.search(src, i)
    if not m:
        out += src[i:]
        break
    out += src[i:m.start()]
    name = m.group(1)
    j = src.index('>>>', m.end())
    cfg = split_top(src[m.end():j])
    k = j + 3
    while src[k].isspace(): k += 1
    assert src[k] == '(', src[m.start():k + 20]
    depth, e = 0, k
    while True:
        if src[e] == '(': depth += 1
        elif src[e] == ')':
            depth -= 1
            if depth == 0: break
        e += 1
    args = src[k + 1:e]
    shmem = cfg[2] if len(cfg) > 2 else '0'
    out += f'::emu::launch("{name.replace(chr(34), "")}", dim3({cfg[0]}), dim3({cfg[1]}), std::size_t({shmem}), [&]() {{ {name}({args}); }})'
    i = e + 1

out = re.sub(r'extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\[\];',
             r'\1* \2 = reinterpret_cast<\1*>(::emu::dynamic_shared());', out)
sys.stdout.write('#line 1 "%s"\n' % sys.argv[1] + out)
