#!/usr/bin/env python3
"""The installed library is a CMake package: meson install into a temporary
DESTDIR, then a CMake project (tests/packaging/consumer) finds it with
find_package(chimera 0.1) through CMAKE_PREFIX_PATH, links chimera::chimera,
builds and runs. A request for a newer version is refused, and the
pkg-config file of the same install points at the same headers.
Usage: test_cmake_package.py SOURCE_ROOT (exit 77, skipped, without cmake; 1 under CI=true)"""
import os
import shutil
import subprocess
import sys
import tempfile

root = os.path.abspath(sys.argv[1])
if shutil.which("cmake") is None:
    if os.environ.get("CI"):  # .ci/install-deps installs cmake: its absence is a broken CI image
        print("cmake not found under CI=true: the CMake package is untested")
        sys.exit(1)
    print("cmake not found: skipped")
    sys.exit(77)

passed = failed = 0


def run(step, expect_ok=True, env=None):
    global passed, failed
    result = subprocess.run(step, capture_output=True, text=True, env=env)
    if (result.returncode == 0) != expect_ok:
        failed += 1
        print(f"FAIL: {' '.join(step)} (exit {result.returncode})\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return None
    passed += 1
    return result


with tempfile.TemporaryDirectory() as tmp:
    build, destdir = os.path.join(tmp, "build"), os.path.join(tmp, "dest")
    prefix = destdir + "/usr/local"
    disabled = [f"-D{o}=disabled" for o in ("tests", "examples", "bench", "cuda", "gpu_emulator", "python", "fuzz")]
    ok = run(["meson", "setup", build, root, "--prefix=/usr/local", *disabled]) and \
        run(["meson", "install", "-C", build, "--destdir", destdir])
    consumer = os.path.join(tmp, "consumer")
    shutil.copytree(os.path.join(root, "tests", "packaging", "consumer"), consumer)
    cmake_build = os.path.join(tmp, "cmake-build")
    if ok and run(["cmake", "-S", consumer, "-B", cmake_build, f"-DCMAKE_PREFIX_PATH={prefix}"]) and \
            run(["cmake", "--build", cmake_build]):
        run([os.path.join(cmake_build, "consumer")])
    # find_package(chimera 1.0) must not accept 0.x; nor 0.2 (minor versions of 0.x differ).
    for request in ("1.0", "0.2"):
        refused = run(["cmake", "-S", consumer, "-B", os.path.join(tmp, "refused-" + request),
                       f"-DCMAKE_PREFIX_PATH={prefix}", f"-DCHIMERA_REQUEST={request}"], expect_ok=False)
        if refused is not None and "chimera" not in refused.stderr:
            failed, passed = failed + 1, passed - 1
            print(f"FAIL: the refusal of {request} does not name chimera:\n{refused.stderr[-2000:]}")
    pc_dirs = [d for d, _, files in os.walk(destdir) if "chimera.pc" in files]
    if shutil.which("pkg-config") is not None and pc_dirs:
        env = dict(os.environ, PKG_CONFIG_PATH=pc_dirs[0], PKG_CONFIG_SYSROOT_DIR=destdir)
        cflags = run(["pkg-config", "--cflags", "chimera"], env=env)
        include = os.path.join(prefix, "include")
        if cflags is not None and f"-I{include}" not in cflags.stdout.split():
            failed, passed = failed + 1, passed - 1
            print(f"FAIL: pkg-config --cflags chimera gave {cflags.stdout!r}, expected -I{include}")
        if not os.path.exists(os.path.join(include, "chimera", "chimera.hpp")):
            failed += 1
            print(f"FAIL: {include}/chimera/chimera.hpp not installed")
    elif ok:
        failed += 1
        print(f"FAIL: no chimera.pc installed under {destdir}" if not pc_dirs else "FAIL: pkg-config not found")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
