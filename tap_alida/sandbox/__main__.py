"""``python -m tap_alida.sandbox`` starts the sandbox server."""

from tap_alida.sandbox.server import main

main()
