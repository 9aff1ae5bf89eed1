"""Counter-based random numbers for Brian2: a uniform draw that is a pure function of (key, unit, step, stream).

Brian2's ``rand()`` is one stream per run, so where a long run is cut into chunks (or spread over
workers) changes every draw after the first cut. :func:`uniform_function` instead hashes the run's
key, the neuron index, the *absolute* time step and a stream number (one per code block that draws)
with SplitMix64's finaliser, so a draw depends only on where and when it is made: the same seed gives
the same spikes for any chunking and on every code-generation target (numpy, cython, cpp_standalone
run the same integer arithmetic). The result is ``(h >> 11 + 0.5) / 2**53``, uniform on (0, 1) with
both ends excluded, so ``log(U)`` and ``log(1 - U)`` are finite.
"""
from __future__ import annotations

import numpy as np

__all__ = ["uniform_numpy", "uniform_function", "stream_key"]

_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = (1 << 64) - 1

_C_MIX = f"""
static inline unsigned long long spikevae_mix(unsigned long long z) {{
    z += {_GOLDEN}ULL;
    z = (z ^ (z >> 30)) * {_M1}ULL;
    z = (z ^ (z >> 27)) * {_M2}ULL;
    return z ^ (z >> 31);
}}
static inline double spikevae_uniform(double key, double unit, double step, double stream) {{
    unsigned long long h = spikevae_mix((unsigned long long) key);
    h = spikevae_mix(h ^ (unsigned long long) unit);
    h = spikevae_mix(h ^ (unsigned long long) step);
    h = spikevae_mix(h ^ (unsigned long long) stream);
    return ((double) (h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}}
"""

_CYTHON = f"""
ctypedef unsigned long long spikevae_u64

cdef inline spikevae_u64 spikevae_mix(spikevae_u64 z):
    z += <spikevae_u64>{_GOLDEN}ULL
    z = (z ^ (z >> 30)) * <spikevae_u64>{_M1}ULL
    z = (z ^ (z >> 27)) * <spikevae_u64>{_M2}ULL
    return z ^ (z >> 31)

cdef double spikevae_uniform(double key, double unit, double step, double stream):
    cdef spikevae_u64 h = spikevae_mix(<spikevae_u64> key)
    h = spikevae_mix(h ^ <spikevae_u64> unit)
    h = spikevae_mix(h ^ <spikevae_u64> step)
    h = spikevae_mix(h ^ <spikevae_u64> stream)
    return (<double> (h >> 11) + 0.5) * (1.0 / 9007199254740992.0)
"""


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def uniform_numpy(key, unit, step, stream) -> np.ndarray:
    """The draw in numpy (the oracle for the compiled versions); arguments are whole numbers ≥ 0."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (key, unit, step, stream)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    if 0 in shape:  # Brian2's numpy target calls the resetter every step, mostly with no spike
        return np.zeros(shape)
    k, u, s, r = (a.astype(np.uint64) for a in np.broadcast_arrays(*arrays))
    with np.errstate(over="ignore"):
        h = _mix(k)
        h = _mix(h ^ u)
        h = _mix(h ^ s)
        h = _mix(h ^ r)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def stream_key(seed: int) -> int:
    """A 52-bit key from a root seed (exact as a double, which is how Brian2 passes it to the draw)."""
    return int(np.random.SeedSequence([int(seed), 0x5B1CE]).generate_state(2, np.uint64)[0] >> np.uint64(12))


def uniform_function(b2):
    """``spikevae_uniform(key, unit, step, stream)`` as a Brian2 ``Function`` for numpy, cython and cpp."""
    f = b2.Function(lambda key, unit, step, stream: uniform_numpy(key, unit, step, stream),
                    arg_units=[1, 1, 1, 1], return_unit=1, arg_types=["any"] * 4, return_type="float",
                    stateless=False, auto_vectorise=False)
    f.implementations.add_implementation("cpp", _C_MIX, name="spikevae_uniform")
    f.implementations.add_implementation("cython", _CYTHON, name="spikevae_uniform")
    return f
