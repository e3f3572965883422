"""``python -m comfyimg COMMAND``: the same CLI as the invoke tasks, without invoke."""

from comfyimg.cli import main

raise SystemExit(main())
