"""`--help` of the console scripts (alexnet-export, ...) lists their flags, as `python -m` does.

absl's `--help` lists the flags of the module `sys.argv[0]` names and prints `__main__`'s
docstring as the usage. Under a console script both are pip's wrapper, which defines no flag
and has no docstring, so `alexnet-export --help` printed neither the usage nor a single flag.
"""

from __future__ import annotations

import sys
import types

from absl import flags


def show_in_help(command_module: types.ModuleType) -> None:
    """Makes `--help` describe `command_module`: its docstring and the flags it defines."""
    for flag in flags.FLAGS.get_key_flags_for_module(command_module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main = sys.modules.get("__main__")
    if main is not None and not getattr(main, "__doc__", None):
        main.__doc__ = command_module.__doc__
