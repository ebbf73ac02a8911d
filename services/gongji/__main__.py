"""`python -m gongji`: the `gongji` command."""

from gongji.cli import main

main()
