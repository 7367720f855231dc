"""Run every ``bench/*.py`` and write one Markdown report, ``bench/REPORT.md``.

Each benchmark measures this project and, where one exists, a peer SDK (pympp,
mppx) in the same run and prints its own results; lines that are Markdown table
rows (starting with ``|``) are collected into the report's summary table, the rest
of each script's output is kept verbatim below it.  Nothing here passes or fails
on a number: timings are for reading, ratios are what compare.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE / "REPORT.md"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main() -> int:
    me = Path(__file__).name
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != me and not p.name.startswith("_"))
    rows: list[str] = []
    sections: list[str] = []
    failed = 0
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                              cwd=HERE.parent)
        out = proc.stdout.strip()
        print(out, flush=True)
        if proc.returncode != 0:
            failed += 1
            out += f"\n\n(exit {proc.returncode})\n{proc.stderr.strip()[-2000:]}"
        rows += [line for line in out.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
        sections.append(f"### {script.name}\n\n```\n{out}\n```\n")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"# Benchmarks\n\nRun {now} on {_machine()}.\n"
            "Each ratio compares this project with a peer measured in the same run.\n\n")
    table = ""
    if rows:
        table = ("| benchmark | mpp_claude | peer / goal | ratio |\n|---|---|---|---|\n"
                 + "\n".join(rows) + "\n\n")
    REPORT.write_text(head + table + "\n".join(sections))
    print(f"wrote {REPORT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
