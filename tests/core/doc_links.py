#!/usr/bin/env python3
"""Every reference to a page of docs/ resolves inside the repository.

Checks, over the source tree:
  * Markdown links [text](relative/path) in .md files: the file exists and,
    with #anchor, the page has a heading with that anchor;
  * plain "docs/<page>.md" and "docs/<page>.md#<anchor>" in any text file (code
    comments, tests, meson files): the same.
Anchors follow GitHub's rule: the heading in lower case, punctuation other
than '-' and '_' dropped, spaces turned into '-', a "-1", "-2" suffix for
repeated headings.

Usage: doc_links.py SOURCE_ROOT
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1])
SKIP_DIRS = {".git", "subprojects", "__pycache__"}
TEXT_EXT = {".hpp", ".h", ".cpp", ".cu", ".cuh", ".py", ".md", ".sh", ".build", ".txt"}
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PLAIN = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)(#[\w-]+)?")


def slug(heading):
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors_of(path, cache={}):
    if path not in cache:
        seen, found, fenced = {}, set(), False
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.lstrip().startswith("```"):
                    fenced = not fenced
                    continue
                m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
                if fenced or not m:
                    continue
                base = slug(m.group(1))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


def source_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("build") and
                         not os.path.exists(os.path.join(folder, d, "meson-private")))
        for name in sorted(files):
            if os.path.splitext(name)[1] in TEXT_EXT or name == "meson.build":
                yield os.path.join(folder, name)


def check(source, line_no, target_path, anchor, problems):
    where = f"{os.path.relpath(source, ROOT)}:{line_no}"
    if not os.path.exists(target_path):
        problems.append(f"{where}: {os.path.relpath(target_path, ROOT)} does not exist")
    elif anchor and target_path.endswith(".md") and anchor not in anchors_of(target_path):
        problems.append(f"{where}: {os.path.relpath(target_path, ROOT)} has no heading with anchor #{anchor}")


def main():
    problems, links = [], 0
    for source in source_files():
        try:
            with open(source, encoding="utf-8") as f:
                lines = f.readlines()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(lines, 1):
            if source.endswith(".md"):
                for target in MD_LINK.findall(line):
                    if re.match(r"[a-z]+:", target):
                        continue  # http:, mailto:
                    path, _, anchor = target.partition("#")
                    full = source if not path else os.path.normpath(os.path.join(os.path.dirname(source), path))
                    links += 1
                    check(source, n, full, anchor, problems)
            for path, anchor in PLAIN.findall(line):
                links += 1
                check(source, n, os.path.join(ROOT, path), anchor[1:], problems)
    for p in problems:
        print("BROKEN", p)
    print(f"{links} doc references checked, {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
