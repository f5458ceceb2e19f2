import sys

from mlic_pipe.cli import main

sys.exit(main())
