"""A call from one kernel to another that is compiled apart: through its address, not linked in.

Numba links the LLVM of every jitted function a kernel calls into the kernel's own module
and optimizes and compiles the whole module again. A parallel driver whose prange body
calls a large worker (rnn.py's `_forward` calling `_forward_rows`, with the GEMM
micro-kernel inlined in it) so compiles the worker twice: once on its own, once inside the
driver. Called through its address instead, the worker is compiled once per argument types
and the driver's module holds only an indirect call:

    rows = address_apart(_forward_rows, a, b, c)     # before the prange (see below)
    for chunk in prange(n):
        call_apart(rows, _forward_rows, a, b, c)     # the same argument types, else a TypingError

The address is looked up by module, name and argument types when the driver first runs
in a process (then kept in the driver's code), so a driver loaded from Numba's cache finds
a worker compiled, or loaded from the cache, by this process. The look-up is a Python call
and takes the GIL: before the prange, in the thread that called the driver, where an
exception it raises reaches the caller (Numba releases the GIL around a parallel region,
and an exception set in one of its worker threads would be lost). The placeholders a
driver passes to the look-up for arrays made inside the prange are never read: only their
types count. The address's type names the worker and its argument types, so a call whose
arguments differ from the look-up's fails to compile instead of calling with the wrong
layout. Exceptions raised in
the worker propagate as from a linked call. What the call cannot do is inline the worker
into the driver: keep it for workers that do much work per call.

Without Numba's internals (kernels/numba_internals.py) both are plain: the look-up is 0
and the call is a linked call, as before.
"""
import importlib

import numba
from numba import types

from numbanet.kernels import numba_internals

_addresses = {}   # key -> (address, the compile result that owns the code at it)


def _jit_address(key):
    """The entry point of one compiled signature, key = (module, qualified name, argument
    types); compiled (or loaded from the cache) here if this process has not yet. Called
    from the code address_apart generates."""
    found = _addresses.get(key)
    if found is None:
        cres = _compiled(_function(key[0], key[1]), key[2])
        addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        if not addr:
            raise RuntimeError(f"address_apart: no compiled entry point for {key[0]}.{key[1]}{key[2]}")
        found = _addresses[key] = (addr, cres)
    return found[0]


def _function(module, qualname):
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    return fn


def _compiled(dispatcher, argtypes):
    if argtypes not in dispatcher.overloads:
        dispatcher.compile(argtypes)
    return dispatcher.overloads[argtypes]


def _key(fn, args):
    if not isinstance(fn, types.Dispatcher):
        raise numba.errors.TypingError(f"address_apart/call_apart: expected a jitted function, got {fn}")
    py = fn.dispatcher.py_func
    # Found again by module and name when the caller runs, so it must be reachable so.
    try:
        reachable = _function(py.__module__, py.__qualname__) is fn.dispatcher
    except (ImportError, AttributeError):
        reachable = False
    if not reachable:
        raise numba.errors.TypingError(f"address_apart/call_apart: {py.__module__}.{py.__qualname__} is not found "
                                       "by that name; a function called apart must be a module's, under its own name")
    return py.__module__, py.__qualname__, tuple(types.unliteral(a) for a in args)


if numba_internals.available():
    from numba.core import cgutils
    from numba.extending import intrinsic, models, register_model

    class ApartType(types.Type):
        """An address of one compiled signature; the signature is in the type."""
        def __init__(self, key):
            self.apart_key = key
            module, qualname, argtypes = key
            super().__init__(name=f"Apart({module}.{qualname}{argtypes})")

    @register_model(ApartType)
    class _ApartModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, cgutils.intp_t)

    @intrinsic
    def address_apart(typingctx, fn, *args):
        key = _key(fn, args)

        def codegen(context, builder, signature, llargs):
            # The address found is kept in a global of the caller's code, zero in the
            # object file: looked up once per process (and per load of the caller), then
            # a load and a test per call. Every thread that stores stores the same value.
            memo = cgutils.add_global_variable(builder.module, cgutils.intp_t,
                                               builder.module.get_unique_name("numbanet.apart"))
            memo.linkage = "internal"
            memo.initializer = cgutils.intp_t(0)
            known = builder.load_atomic(memo, "monotonic", 8)
            with builder.if_then(cgutils.is_null(builder, known), likely=False):
                pyapi = context.get_python_api(builder)
                gil = pyapi.gil_ensure()
                lookup = pyapi.unserialize(pyapi.serialize_object(_jit_address))
                keyobj = pyapi.unserialize(pyapi.serialize_object(key))
                failed = builder.or_(cgutils.is_null(builder, lookup), cgutils.is_null(builder, keyobj))
                with builder.if_then(failed, likely=False):
                    pyapi.gil_release(gil)
                    context.call_conv.return_exc(builder)
                found = pyapi.call_function_objargs(lookup, (keyobj,))
                pyapi.decref(lookup)
                pyapi.decref(keyobj)
                with builder.if_then(cgutils.is_null(builder, found), likely=False):
                    # The look-up raised (the worker failed to compile): its exception is set.
                    pyapi.gil_release(gil)
                    context.call_conv.return_exc(builder)
                addr = builder.ptrtoint(pyapi.long_as_voidptr(found), cgutils.intp_t)
                pyapi.decref(found)
                builder.store_atomic(addr, memo, "monotonic", 8)
                pyapi.gil_release(gil)
            return builder.load_atomic(memo, "monotonic", 8)
        return ApartType(key)(fn, types.StarArgTuple.from_types(args)), codegen

    @intrinsic
    def call_apart(typingctx, address, fn, *args):
        key = _key(fn, args)
        if not isinstance(address, ApartType) or address.apart_key != key:
            raise numba.errors.TypingError(f"call_apart: the address is {address}, the call is {key}")
        argtypes = key[2]
        restype = _compiled(fn.dispatcher, argtypes).signature.return_type

        def codegen(context, builder, signature, llargs):
            given = cgutils.unpack_tuple(builder, llargs[2])
            values = [context.cast(builder, v, t, a) for v, t, a in zip(given, signature.args[2].types, argtypes)]
            fnty = context.call_conv.get_function_type(restype, argtypes)
            callee = builder.inttoptr(llargs[0], fnty.as_pointer())
            status, result = context.call_conv.call_function(builder, callee, restype, argtypes, values)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return result
        return restype(address, fn, types.StarArgTuple.from_types(args)), codegen

else:
    # Plain functions, not inline="always": Numba's inliner takes no *args.
    @numba.njit(cache=True)
    def address_apart(fn, *args):
        return 0

    @numba.njit(cache=True)
    def call_apart(address, fn, *args):
        return fn(*args)
