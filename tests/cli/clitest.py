"""Shared harness of the command-line tests: run the tool, count checks, and
end with the 'N passed, N failed' line."""
import subprocess
import sys


class Checks:
    def __init__(self, exe):
        self.exe = exe
        self.passed = 0
        self.failed = 0

    def run(self, *args, stdin=None):
        return subprocess.run([self.exe, *args], capture_output=True, text=True, input=stdin, timeout=120)

    def expect(self, name, condition, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
