"""``python -m alida_sandbox`` starts the sandbox server."""

from alida_sandbox.server import main

main()
