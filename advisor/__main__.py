import sys

from advisor.cli import command

sys.exit(command())
