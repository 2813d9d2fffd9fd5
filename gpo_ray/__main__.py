import sys

from gpo_ray.cli import main

sys.exit(main())
