"""`python -m faceage` runs the command-line interface."""

from faceage.cli import main

main()
