"""``python -m tierline``."""

import sys

from tierline.cli import main

sys.exit(main())
