"""critest (cri-tools' CRI validation suite) against a fresh berth engine.

    python -m tests.conformance.critest --critest PATH --images DIR [--report DIR] [critest flags...]

Starts berthd on throwaway roots (tests/support/engine.py), loads every
docker-archive tarball in DIR (the images critest expects, under the names it
expects: it pulls only images the runtime reports absent), runs critest on the
engine's cri.sock, prints its summary and removes every trace. critest needs
root, `ipcmk`, and host ports 12000-12003 free. The exit status is critest's.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

from tests.support.engine import Engine


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="critest.py", description=__doc__.splitlines()[0])
    parser.add_argument("--critest", required=True, help="the critest binary (cri-tools v1.26)")
    parser.add_argument("--images", required=True, help="directory of docker-archive .tar images to load")
    parser.add_argument("--report", default="critest-report", help="where the log and junit.xml go")
    args, extra = parser.parse_known_args(argv)
    tars = sorted(glob.glob(os.path.join(args.images, "*.tar")))
    if not tars:
        print(f"no .tar images in {args.images}", file=sys.stderr)
        return 2
    os.makedirs(args.report, exist_ok=True)
    report = os.path.abspath(args.report)
    engine = Engine().start()
    try:
        engine.wait_serving("cri", 60)
        for tar in tars:
            engine.cli("load", "-i", tar, check=True, timeout=300)
        endpoint = f"unix://{engine.socket('cri')}"
        with open(os.path.join(report, "critest.log"), "wb") as log:
            code = subprocess.run(
                [args.critest, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
                 "-ginkgo.no-color", f"-ginkgo.junit-report={report}/junit.xml", *extra],
                stdout=log, stderr=subprocess.STDOUT, cwd=report,
                env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()}).returncode
        with open(os.path.join(report, "critest.log"), errors="replace") as f:
            text = f.read()
        for line in re.findall(r"^\s*\[FAIL\] .*$", text, re.M):
            print(line.strip())
        summary = re.findall(r"^(?:Ran \d+ of \d+ Specs.*|SUCCESS!.*|FAIL!.*)$", text, re.M)
        print("\n".join(summary) or f"critest exited {code}; see {report}/critest.log")
        return code
    finally:
        engine.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
