import sys

from berth_cli.cli import main

sys.exit(main())
