import random, sys
random.seed(7)
series = int(sys.argv[1]); hours = int(sys.argv[2])
end = 1795000000 // 3600 * 3600
start = end - hours * 3600
out = sys.stdout
kinds = []
for s in range(series):
    k = s % 4
    kinds.append(k)

# counters: cpu seconds (float increments), requests (int increments)
state = [0.0] * series
fams = {0: "node_cpu_seconds_total", 1: "http_requests_total", 2: "node_memory_free_bytes", 3: "node_filesystem_size_bytes"}
lines = {0: [], 1: [], 2: [], 3: []}
for s in range(series):
    k = kinds[s]
    name = fams[k]
    lbl = f'{{instance="host-{s//40}:9100",job="node",idx="{s%40}"}}'
    v = 1000.0 * random.random() if k != 3 else float(random.choice([1, 2, 4, 8]) * 2**34)
    if k == 2: v = float(random.randint(2**30, 2**33))
    t = start
    buf = []
    while t < end:
        if k == 0: v += round(random.uniform(0.5, 14.9), 2)
        elif k == 1: v += random.randint(0, 50)
        elif k == 2: v = float(max(0, v + random.randint(-2**20, 2**20) // 4096 * 4096))
        buf.append(f"{name}{lbl} {repr(v) if k in (0,) else int(v)} {t}\n")
        t += 15
    lines[k].append("".join(buf))
for k in range(4):
    out.write(f"# TYPE {fams[k].removesuffix('_total')} {'counter' if k < 2 else 'gauge'}\n")
    for b in lines[k]:
        out.write(b)
out.write("# EOF\n")
