"""chimera-train --profile-out writes a profile that chimera-sched tune
--profile reads: every stage timed, layers adding up to the tiny GPT's, and
the calibrated model times the profiled configuration's forward ops as
measured (sum over stages at the measured micro-batch size) and adds the
measured optimizer seconds per parameter; profiles at two micro-batch sizes
calibrate together, two at one size are refused.

usage: profile_roundtrip.py CHIMERA_TRAIN CHIMERA_SCHED PRESETS_DIR"""
import json
import os
import subprocess
import sys
import tempfile

train, sched, presets = sys.argv[1:4]
tmp = tempfile.mkdtemp()
profile = os.path.join(tmp, "profile.json")
failed = 0


def expect(name, ok, detail=""):
    global failed
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    failed += 0 if ok else 1


r = subprocess.run([train, "--schedule", "1f1b", "--stages", "4", "--micro-batches", "4", "--batch", "2", "--steps", "2",
                    "--profile-out", profile], capture_output=True, text=True, timeout=300)
expect("chimera-train --profile-out exits 0", r.returncode == 0, r.stderr)
doc = json.load(open(profile)) if r.returncode == 0 else {"stages": []}
stages = doc["stages"]
expect("four stages, each timed", len(stages) == 4 and all(s["forward"] > 0 and s["backward"] > 0 for s in stages), doc)
expect("layers add up to the tiny GPT's 8", sum(s["layers"] for s in stages) == 8, stages)
expect("micro_batch_size is --batch", doc.get("micro_batch_size") == 2, doc)
expect("optimizer seconds per parameter measured", doc.get("optimizer_seconds_per_parameter", 0) > 0, doc)
model = os.path.join(presets, "models", "tiny-gpt.json")
cluster = os.path.join(presets, "clusters", "p100-aries.json")
r = subprocess.run([sched, "simulate", "--model", model, "--cluster", cluster, "--profile", profile, "--schedule", "1f1b",
                    "--stages", "4", "--micro-batches", "4", "--micro-batch-size", "2", "--cost", "F=1"],
                   capture_output=True, text=True, timeout=60)
expect("simulate --profile refuses --cost next to --model", r.returncode == 2, r.stderr)
r = subprocess.run([sched, "simulate", "--model", model, "--cluster", cluster, "--profile", profile, "--schedule", "gpipe",
                    "--stages", "4", "--micro-batches", "1", "--micro-batch-size", "2"],
                   capture_output=True, text=True, timeout=60)
sim = json.loads(r.stdout) if r.returncode == 0 else {"workers": []}
busy = sum(w["busy"] for w in sim["workers"])
r = subprocess.run([sched, "tune", "--model", model, "--cluster", cluster, "--profile", profile, "--devices", "4",
                    "--global-batch", "16"], capture_output=True, text=True, timeout=120)
expect("tune --profile ranks", r.returncode == 0 and "configurations fit" in r.stdout, r.stderr)
parameters = int(r.stdout.split(" parameters)")[0].rsplit("(", 1)[1]) if r.returncode == 0 else 0
want = sum(s["forward"] + s["backward"] for s in stages) + parameters * doc.get("optimizer_seconds_per_parameter", 0)
expect("one micro-batch through the calibrated model costs the measured F + B and optimizer step",
       abs(busy - want) <= 1e-9 * want, f"{busy} vs {want} {r.stderr}")
second = os.path.join(tmp, "profile-4.json")
r = subprocess.run([train, "--schedule", "1f1b", "--stages", "4", "--micro-batches", "4", "--batch", "4", "--steps", "2",
                    "--profile-out", second], capture_output=True, text=True, timeout=300)
expect("a second profile at B = 4", r.returncode == 0, r.stderr)
tune = [sched, "tune", "--model", model, "--cluster", cluster, "--devices", "4", "--global-batch", "16"]
r = subprocess.run(tune + ["--profile", profile, "--profile", second], capture_output=True, text=True, timeout=120)
expect("tune --profile at B = 2 and B = 4 ranks", r.returncode == 0 and "configurations fit" in r.stdout, r.stderr)
r = subprocess.run(tune + ["--profile", profile, "--profile", profile], capture_output=True, text=True, timeout=120)
expect("two profiles at one micro-batch size are refused, naming it",
       r.returncode == 2 and "two profiles at micro-batch size 2" in r.stderr, (r.returncode, r.stderr))
print(f"{failed} failed")
sys.exit(1 if failed else 0)
