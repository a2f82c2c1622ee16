"""`python -m pytest_distill.suite.schemas --docs` prints docs/settings.md."""

import sys

from pytest_distill.suite.validate import settings_docs

if sys.argv[1:] == ["--docs"]:
    sys.stdout.write(settings_docs())
else:
    sys.exit("usage: python -m pytest_distill.suite.schemas --docs")
