import sys

from offline.cli import main

sys.exit(main())
