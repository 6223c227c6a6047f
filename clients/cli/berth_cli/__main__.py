import gc
import os
import sys

# A command lives for one call: no collection while it imports (cli.main turns the collector
# back on, for the verbs that stream for long, once what is imported is frozen out of it).
gc.disable()

from berth_cli import messages

messages.install()

from berth_cli.cli import main  # noqa: E402 — after install, so the verbs' imports are cheap

code = main()
# Leave without the interpreter's shutdown: grpc's channel teardown at exit
# costs ~90 ms per command and nothing is left to clean up.
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError):  # the reader left (`berth ... | head -1`): nothing to tell it
        pass
os._exit(code)
