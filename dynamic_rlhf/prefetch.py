"""A cache prefetch hint for the compiled loops.

``prefetch(array, index)`` emits LLVM's ``llvm.prefetch`` intrinsic, with which the
CPU starts loading the cache line of ``array[index]`` (a C-contiguous one-dimensional
array) and goes on without waiting for it. It changes no value. Without numba it is a function that
does nothing, and the loops that call it skip the call (see ``kernels.COMPILED``).
"""

from __future__ import annotations

from typing import Any

try:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.core import types as numba_types
    from numba.extending import intrinsic
except ImportError:  # numba is optional: nothing is prefetched.

    def prefetch(array: Any, index: int) -> None:
        """Do nothing: without numba no loop is compiled, so a hint would not help."""

else:

    @intrinsic
    def prefetch(typing_context, array, index):  # type: ignore[no-untyped-def]
        """Emit ``llvm.prefetch`` (read, high locality, data cache) for ``array[index]``."""

        def codegen(context, builder, signature, arguments):  # type: ignore[no-untyped-def]
            array_type = signature.args[0]
            view = context.make_array(array_type)(context, builder, arguments[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, view, [arguments[1]], wraparound=False)
            byte_pointer = ir.IntType(8).as_pointer()
            int32 = ir.IntType(32)
            function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32])
            function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0i8")
            read, high_locality, data_cache = (ir.Constant(int32, value) for value in (0, 3, 1))
            builder.call(function, [builder.bitcast(pointer, byte_pointer), read, high_locality, data_cache])
            return context.get_dummy_value()

        return numba_types.void(array, index), codegen
