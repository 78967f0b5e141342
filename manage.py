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


def _check_settings() -> None:
    """Stop with one clear line per problem, before Django loads the settings.

    Inside Django a settings error surfaces as a long traceback (or, for ``runnode``, as
    "Unknown command" when the apps fail to load): the operator must see which variable is
    wrong and what it should be. Exit status 2, like a command-line usage error.
    """
    from server.config import SettingError, from_environ

    try:
        from_environ()
    except SettingError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    _data_dir_from_argv(sys.argv)
    _check_settings()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
