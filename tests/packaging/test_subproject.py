#!/usr/bin/env python3
"""The library works as a Meson subproject: dependency('chimera') resolves
through meson.override_dependency and a consumer builds and runs.
Usage: test_subproject.py SOURCE_ROOT"""
import os
import shutil
import subprocess
import sys
import tempfile

root = os.path.abspath(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    project = os.path.join(tmp, "consumer")
    shutil.copytree(os.path.join(root, "tests", "packaging", "consumer"), project)
    os.makedirs(os.path.join(project, "subprojects"))
    os.symlink(root, os.path.join(project, "subprojects", "chimera"))
    build = os.path.join(project, "build")
    steps = [
        ["meson", "setup", build, project, "-Dchimera:tests=disabled", "-Dchimera:examples=disabled",
         "-Dchimera:bench=disabled"],
        ["meson", "compile", "-C", build],
        [os.path.join(build, "consumer")],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"FAIL: {' '.join(step)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
            print("0 passed, 1 failed")
            sys.exit(1)
print("1 passed, 0 failed")
