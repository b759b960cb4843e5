import sys

from igds.cli import main

sys.exit(main())
