import os
import sys

from berth_cli import messages

messages.install()

from berth_cli.cli import main  # noqa: E402 — after install, so the verbs' imports are cheap

code = main()
# Leave without the interpreter's shutdown: grpc's channel teardown at exit
# costs ~90 ms per command and nothing is left to clean up.
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BrokenPipeError:
    pass
os._exit(code)
