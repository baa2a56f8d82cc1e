"""``python -m dialbgm``: the ``dialbgm`` command."""

from dialbgm.cli import main

main()
