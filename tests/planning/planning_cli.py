"""chimera-sched tune/simulate with model and cluster files (docs/planning.md):
the shipped preset files give the built-in presets' tables byte for byte; bad
files are refused naming the field and the value; --why/--format json terms
add up to the iteration time; every point of the search is ranked or
rejected exactly once; --plot writes an SVG; simulate --model agrees with tune.

usage: planning_cli.py CHIMERA_SCHED PRESETS_DIR"""
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from clitest import Checks  # noqa: E402

checks = Checks(sys.argv[1])
presets = sys.argv[2]
model = lambda name: os.path.join(presets, "models", name + ".json")  # noqa: E731
cluster = lambda name: os.path.join(presets, "clusters", name + ".json")  # noqa: E731
tmp = tempfile.mkdtemp()

# 1. Preset files = built-in presets (every preset, two shapes each).
CLUSTERS = {"p100": "p100-aries", "h100": "h100-nvlink-ib"}
for preset in ["gpt2-1.3b-p100", "bert-48-p100", "gpt2-124m-p100", "gpt2-1.3b-h100", "bert-48-h100", "gpt2-124m-h100"]:
    name, device = preset.rsplit("-", 1)
    for devices, batch in [(8, 32), (32, 512)]:
        shape = ["--devices", str(devices), "--global-batch", str(batch), "--top", "1000"]
        a = checks.run("tune", "--preset", preset, *shape)
        b = checks.run("tune", "--model", model(name), "--cluster", cluster(CLUSTERS[device]), *shape)
        same = a.returncode == b.returncode and a.stdout.split(":", 1)[-1] == b.stdout.split(":", 1)[-1]
        checks.expect(f"{preset} P={devices} G={batch}: file = preset", same and (a.returncode == 0 or "fits" in a.stderr),
                      f"{a.returncode} {b.returncode}\n{a.stdout[:300]}\n{b.stdout[:300]}\n{b.stderr}")


# 2. Bad files: exit 2, one line naming the field and the value.
def bad(kind, base, change, *needles):
    doc = json.load(open(model(base) if kind == "model" else cluster(base)))
    change(doc)
    path = os.path.join(tmp, f"bad-{checks.passed + checks.failed}.json")
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    files = ["--model", path, "--cluster", cluster("p100-aries")] if kind == "model" else \
        ["--model", model("gpt2-124m"), "--cluster", path]
    r = checks.run("tune", *files, "--devices", "8", "--global-batch", "32")
    ok = r.returncode == 2 and all(n in r.stderr for n in needles) and r.stderr.count("\n") == 1 and path in r.stderr
    checks.expect(f"bad {kind} file refused: {needles}", ok, f"rc {r.returncode}: {r.stderr}")


def setter(*keys, value=None, delete=False):
    def change(doc):
        for k in keys[:-1]:
            doc = doc[k]
        if delete:
            del doc[keys[-1]]
        else:
            doc[keys[-1]] = value
    return change


bad("model", "gpt2-124m", setter("hidden", delete=True), "'hidden'", "missing")
bad("model", "gpt2-124m", setter("hidden", value="768"), "'hidden'", "integer", '"768"')
bad("model", "gpt2-124m", setter("hidden", value=768.5), "'hidden'", "768.5")
bad("model", "gpt2-124m", setter("layers", value=-3), "'layers'", ">= 1", "-3")
bad("model", "gpt2-124m", setter("heads", value=7), "'heads'", "'hidden' = 768", "7")
bad("model", "gpt2-124m", setter("tied_head", value="yes"), "'tied_head'", "true or false")
bad("model", "gpt2-124m", setter("layer_flops", value=-1.0), "'layer_flops'", "> 0", "-1.0")
bad("model", "gpt2-124m", setter("hiddne", value=768), "unknown field 'hiddne'")
bad("model", "gpt2-124m", setter("format", value="chimera-cluster"), "'format'", "chimera-model")
bad("cluster", "p100-aries", setter("device", "memory_bytes", value=0), "'device.memory_bytes'", "> 0")
bad("cluster", "p100-aries", setter("device", "efficiency", value=1.5), "'device.efficiency'", "<= 1", "1.5")
bad("cluster", "p100-aries", setter("device", "peak_flops", delete=True), "'device.peak_flops'", "missing")
bad("cluster", "p100-aries", setter("inter_node", "alpha", value=-2e-6), "'inter_node.alpha'", ">= 0", "-2e-06")
bad("cluster", "p100-aries", setter("devices_per_node", value=3), "'devices_per_node'", "'devices' = 2048", "3")
bad("cluster", "p100-aries", setter("devices_per_node", value=8), "'intra_node'", "missing")
bad("cluster", "p100-aries", setter("intra_node", value={"alpha": 0, "beta": 0}), "'intra_node'", "devices_per_node")
bad("cluster", "p100-aries", setter("cores_per_node", value=0), "'cores_per_node'", ">= 1", "0")
bad("cluster", "p100-aries", setter("cores_per_node", value=-4), "'cores_per_node'", ">= 1", "-4")
bad("cluster", "p100-aries", setter("cores_per_node", value=2.5), "'cores_per_node'", "integer", "2.5")
bad("cluster", "p100-aries", setter("cores_per_node", value="2"), "'cores_per_node'", "integer", '"2"')
bad("cluster", "p100-aries", setter("device", value=[1, 2]), "device", "JSON object")
bad("cluster", "p100-aries", lambda d: d.update(inter_node="fast"), "inter_node", "JSON object", '"fast"')
with open(os.path.join(tmp, "broken.json"), "w") as f:
    f.write('{"format": "chimera-model", ')
r = checks.run("tune", "--model", os.path.join(tmp, "broken.json"), "--cluster", cluster("p100-aries"),
               "--devices", "8", "--global-batch", "32")
checks.expect("truncated JSON refused", r.returncode == 2 and "not valid JSON" in r.stderr, r.stderr)
r = checks.run("tune", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--devices", "4096",
               "--global-batch", "32")
checks.expect("more devices than the cluster refused", r.returncode == 2 and "2048 devices" in r.stderr, r.stderr)

# 3. JSON: terms add up; ranked + rejected covers the search space once.
P, G, MAXB, LAYERS = 16, 64, 8, 12
shape = ["--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--devices", str(P), "--global-batch",
         str(G), "--max-micro-batch", str(MAXB), "--memory", "1.5", "--top", "5"]
r = checks.run("tune", *shape, "--format", "json")
doc = json.loads(r.stdout) if r.returncode == 0 else {"ranked": [], "rejected": []}
checks.expect("tune --format json exits 0", r.returncode == 0, r.stderr)
for row in doc["ranked"][:5]:
    t = row["terms"]
    total = t["compute"] + t["bubble"] + t["p2p"] + t["allreduce"]
    checks.expect(f"rank {row['rank']}: terms add up", abs(total - row["iteration_seconds"]) <= 1e-9 * total,
                  f"{t} vs {row['iteration_seconds']}")
    checks.expect(f"rank {row['rank']}: terms >= 0 and headroom >= 0", min(t.values()) >= -1e-12, t)
checks.expect("rows after the top have no terms", all("terms" not in row for row in doc["ranked"][5:]))
rules = {}
for row in doc["rejected"]:
    rules.setdefault(row["rule"].split(":")[0], []).append(row)
checks.expect("memory, divisibility, layers and S-rules all appear", {"memory", "divisibility", "layers"} <= set(rules)
              and any(k.startswith("S") or "N" in k for k in rules), sorted(rules))
expected = 0
for d in [d for d in range(1, P + 1) if P % d == 0]:
    w = P // d
    for b in [1, 2, 4, 8]:
        if d > LAYERS or G % (b * w):
            expected += 1
            continue
        expected += 2 * 2 + (2 * (d // 2 + 2) if d >= 2 else 0)  # gpipe, 1f1b; chimera k = 2f direct, k = 2 doubling/halving; +- recompute
keys = [json.dumps({k: v for k, v in row.items() if k in "schedule D W B N k scaling recompute".split()}, sort_keys=True)
        for row in doc["ranked"] + doc["rejected"]]
checks.expect("every point ranked or rejected once", len(keys) == expected and len(set(keys)) == len(keys),
              f"{len(keys)} rows, {len(set(keys))} distinct, expected {expected}")
checks.expect("evaluated = ranked + memory rejections",
              doc["evaluated"] == len(doc["ranked"]) + len(rules.get("memory", [])), doc["evaluated"])

# 4. --why text, --plot SVG.
svg = os.path.join(tmp, "plot.svg")
r = checks.run("tune", *shape, "--why", "--plot", svg)
checks.expect("--why prints terms and rejections", r.returncode == 0 and "why (seconds" in r.stdout
              and "rejected: " in r.stdout and "memory: " in r.stdout, r.stdout[-600:])
try:
    root = ET.parse(svg).getroot()
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    best = doc["ranked"][0]
    checks.expect("plot marks the chosen point", f"chosen: {best['schedule']} D={best['D']}" in texts, texts[:300])
    checks.expect("plot has a line per schedule", len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 6)
except (OSError, ET.ParseError) as e:
    checks.expect("plot is valid SVG", False, str(e))

# 5. simulate --model/--cluster times the top configuration as tune does.
best = doc["ranked"][0]
r = checks.run("simulate", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--schedule",
               best["schedule"], "--stages", str(best["D"]), "--micro-batches", str(best["N"]), "--pipelines",
               str(best["k"]), "--scaling", best["scaling"], "--data-parallel", str(best["W"]), "--micro-batch-size",
               str(best["B"]), "--sync", "eager", *(["--recompute"] if best["recompute"] else []))
sim = json.loads(r.stdout) if r.returncode == 0 else {"makespan": -1}
checks.expect("simulate --model = tune's iteration time", sim["makespan"] == best["iteration_seconds"],
              f"{sim['makespan']} vs {best['iteration_seconds']} {r.stderr}")
r = checks.run("simulate", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--cost", "F=1",
               "--schedule", "1f1b", "--stages", "2", "--micro-batches", "2")
checks.expect("simulate --model with --cost refused", r.returncode == 2, r.stderr)

# 6. devices_per_node: a pipeline inside a node uses the intra-node network.
doc = json.load(open(cluster("p100-aries")))
doc.update(devices_per_node=8, intra_node={"name": "nvlink", "alpha": 0, "beta": 0})
node = os.path.join(tmp, "node.json")
json.dump(doc, open(node, "w"))
spans = []
for c in [cluster("p100-aries"), node]:
    r = checks.run("simulate", "--model", model("gpt2-124m"), "--cluster", c, "--schedule", "1f1b", "--stages", "4",
                   "--micro-batches", "8", "--data-parallel", "2")
    spans.append(json.loads(r.stdout)["makespan"] if r.returncode == 0 else -1)
checks.expect("free intra-node links shorten a 4-stage pipeline on 8-device nodes", 0 < spans[1] < spans[0], spans)

# 7. --profile: measured stage costs replace the modelled ones. The calibrated
# model keeps the measured totals (sum of F and of B over the stages) at the
# measured micro-batch size and scales linearly with B.
prof = os.path.join(tmp, "profile.json")
json.dump({"format": "chimera-profile", "model": "gpt2-124m", "micro_batch_size": 2, "stages": [
    {"layers": 5, "forward": 0.010, "backward": 0.025}, {"layers": 7, "forward": 0.014, "backward": 0.030}]},
    open(prof, "w"))
for b, n in [(2, 4), (4, 4), (2, 6)]:
    r = checks.run("simulate", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--profile", prof,
                   "--schedule", "1f1b", "--stages", "2", "--micro-batches", str(n), "--micro-batch-size", str(b))
    busy = sum(w["busy"] for w in json.loads(r.stdout)["workers"]) if r.returncode == 0 else -1
    want = n * (0.010 + 0.014 + 0.025 + 0.030) * b / 2
    checks.expect(f"profile B={b} N={n}: busy time = N x measured totals x B/2", abs(busy - want) < 1e-9 * want,
                  f"{busy} vs {want}: {r.stderr}")
json.dump({"format": "chimera-profile", "micro_batch_size": 2, "stages": [{"layers": 5, "forward": 0.01, "backward": 0}]},
          open(prof, "w"))
r = checks.run("tune", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--profile", prof,
               "--devices", "8", "--global-batch", "32")
checks.expect("profile whose layers do not add up refused", r.returncode == 2 and "'stages'" in r.stderr and "12" in r.stderr
              and "(got 5)" in r.stderr, r.stderr)
json.dump({"format": "chimera-profile", "micro_batch_size": 2, "stages": [{"layers": 12, "forward": -1, "backward": 0}]},
          open(prof, "w"))
r = checks.run("tune", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--profile", prof,
               "--devices", "8", "--global-batch", "32")
checks.expect("negative measured time refused", r.returncode == 2 and "'stages[0].forward'" in r.stderr, r.stderr)

# 7b. A Chrome trace as the profile: mean F/B durations per stage (microseconds).
r = checks.run("export", "--schedule", "gpipe", "--stages", "4", "--micro-batches", "3", "--format", "chrome-trace",
               "--forward-cost", "1.5", "--backward-cost", "4")
trace = json.loads(r.stdout)
trace["otherData"]["micro_batch_size"] = 2
trace_path = os.path.join(tmp, "step.trace.json")
json.dump(trace, open(trace_path, "w"))
r = checks.run("simulate", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--profile", trace_path,
               "--schedule", "gpipe", "--stages", "3", "--micro-batches", "1", "--micro-batch-size", "2")
busy = sum(w["busy"] for w in json.loads(r.stdout)["workers"]) if r.returncode == 0 else -1
checks.expect("trace profile: F + B of all stages = 4 x (1.5 + 4) ms", abs(busy - 0.022) < 1e-12, f"{busy} {r.stderr}")
del trace["otherData"]["micro_batch_size"]
json.dump(trace, open(trace_path, "w"))
r = checks.run("tune", "--model", model("gpt2-124m"), "--cluster", cluster("p100-aries"), "--profile", trace_path,
               "--devices", "8", "--global-batch", "32")
checks.expect("trace without otherData.micro_batch_size refused", r.returncode == 2 and "micro_batch_size" in r.stderr,
              r.stderr)

# 8. bench/mpi_cluster.py: the MPI benchmark's alpha/beta line into a cluster file tune reads.
import subprocess  # noqa: E402
bench_out = os.path.join(tmp, "bench.txt")
with open(bench_out, "w") as f:
    f.write("| 4 | 3.25 | 0.001 | 0.001 |\n\nalpha 3.25e-06 s, beta 1.15e-09 s/byte (chimera-sched simulate --p2p 3.25e-06,1.15e-09)\n")
script = os.path.join(os.path.dirname(presets), "bench", "mpi_cluster.py")
measured = os.path.join(tmp, "measured.json")
r = subprocess.run([sys.executable, script, bench_out, "--template", cluster("p100-aries"), "--link", "inter", "--out",
                    measured], capture_output=True, text=True)
doc = json.load(open(measured)) if r.returncode == 0 else {}
checks.expect("mpi_cluster.py writes the measured inter_node", doc.get("inter_node") == {
    "name": "mpi-measured", "alpha": 3.25e-06, "beta": 1.15e-09}, f"{doc} {r.stderr}")
r = checks.run("tune", "--model", model("gpt2-124m"), "--cluster", measured, "--devices", "8", "--global-batch", "32")
checks.expect("tune reads the measured cluster file", r.returncode == 0 and "mpi-measured" in r.stdout, r.stderr)
r = subprocess.run([sys.executable, script, bench_out, "--template", cluster("p100-aries"), "--link", "intra"],
                   capture_output=True, text=True)
checks.expect("--link intra on a one-device-per-node template refused", r.returncode != 0 and "devices_per_node" in r.stderr,
              r.stderr)
checks.finish()
