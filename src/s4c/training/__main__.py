"""``python -m s4c.training ARGS``: ``s4c train ARGS``, the form torchrun starts on each rank:

    torchrun --standalone --nproc-per-node 2 -m s4c.training --data cohort/ --preset roi --phase arterial --out run/
"""

from __future__ import annotations

import sys

from s4c.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
