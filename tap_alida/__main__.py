"""``python -m tap_alida`` runs the tap, like the ``tap-alida`` console script."""

from tap_alida.tap import main

main()
