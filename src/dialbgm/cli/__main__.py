"""``python -m dialbgm.cli``: the ``dialbgm`` command."""

from dialbgm.cli import main

main()
