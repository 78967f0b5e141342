#!/usr/bin/env python
import os
import sys


def _data_dir_from_argv(argv: list[str]) -> None:
    """``runnode --data-dir D`` must decide where SQLite and the secrets live, and Django reads
    settings before the command parses its arguments: pass it on through the environment."""
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            os.environ["NAMING_DATA_DIR"] = argv[i + 1]
        elif arg.startswith("--data-dir="):
            os.environ["NAMING_DATA_DIR"] = arg.split("=", 1)[1]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    _data_dir_from_argv(sys.argv)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
