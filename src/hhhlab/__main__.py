"""``python -m hhhlab`` = the ``hhhlab`` command; also what launchers run:
``accelerate launch -m hhhlab eval ...`` or ``torchrun --nproc-per-node 2 -m hhhlab pm eval ...``."""

from hhhlab.cli import main

if __name__ == "__main__":
    main()
