import sys

from advisor.runner.main import main

sys.exit(main())
