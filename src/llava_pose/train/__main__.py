"""``python -m llava_pose.train ...`` = ``llava-pose train ...`` (for accelerate/torchrun)."""

import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
