import sys

from pytest_distill.cli import main

sys.exit(main())
