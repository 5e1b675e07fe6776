"""Networks and objectives for invariant-equivariant self-supervised learning. No file I/O.

`build_method(name, **overrides)` builds a registered method; `list_methods()` names them all and
`method_defaults(name)` gives a method's resolved default options; `check_method_options(name, options)`
raises MethodOptionError for an option the method lacks or a value of the wrong type or out of range.
"""

from sie_models.methods import (
    ACTION_DIMS,
    Method,
    MethodOptionError,
    MethodOutput,
    UnknownMethodError,
    build_method,
    check_method_options,
    describe_method,
    list_methods,
    method_defaults,
)

__all__ = [
    "ACTION_DIMS",
    "Method",
    "MethodOptionError",
    "MethodOutput",
    "UnknownMethodError",
    "build_method",
    "check_method_options",
    "describe_method",
    "list_methods",
    "method_defaults",
]
