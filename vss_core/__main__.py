import sys

from vss_core.cli import main

sys.exit(main())
