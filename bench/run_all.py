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
README = HERE.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


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
        rows += _table_rows(out)
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
    _update_readme(f"Run {now} on {_machine()} (full output: `bench/REPORT.md`).\n\n" + table)
    return 1 if failed else 0


def _is_separator(line: str) -> bool:
    return line.startswith("|") and set(line) <= set("|-: ")


def _table_rows(out: str) -> list[str]:
    """Data rows of the Markdown tables in ``out``: no separator rows, no header rows."""
    lines = out.splitlines()
    return [line for i, line in enumerate(lines)
            if line.startswith("|") and not _is_separator(line)
            and not (i + 1 < len(lines) and _is_separator(lines[i + 1]))]


def _update_readme(summary: str) -> None:
    """Replace the README's benchmark section (between the two markers) with ``summary``."""
    text = README.read_text()
    if START not in text or END not in text:
        return
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{summary}{END}{after}")
    print(f"updated {README}")


if __name__ == "__main__":
    sys.exit(main())
