import sys

from modules.benchmark.cli import main

sys.exit(main())
