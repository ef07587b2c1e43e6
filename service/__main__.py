"""Run the ``dynamic-rlhf`` command line as ``python -m service``."""

import sys

from service.cli import main

sys.exit(main())
