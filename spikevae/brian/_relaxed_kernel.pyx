# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Compiled relaxed Poisson counts: each element draws the arrivals of its own window, one by one.

For element i with rate λ and window ``(a, b)`` (:func:`spikevae.models.poisson.window_edges`), unit-rate
exponential gaps are summed into arrival times ``T = Γ/λ`` until one falls past ``b``; each arrival adds
``σ((1 − T)/t)`` to the count (or ``[T < 1]`` in hard mode) and ``σ(1 − σ)·T`` to the derivative's sum. More
than ``skip_after`` expected arrivals before ``a`` are counted with one Poisson draw (PTRS, Hörmann 1993, as
numpy draws it) and the chain goes on from ``a``; more than ``gaussian_after`` expected arrivals left make
the remainder one Gaussian with its exact mean and variance; the arrivals past ``b`` add their expectation (Campbell's theorem), as in
:func:`spikevae.models.poisson._gaussian_remainder`. Every element has its own SplitMix64 stream, seeded from
the call's seed and the element's index, so the counts do not depend on how the elements are split over
threads; the exponential gaps come from Marsaglia and Tsang's (2000) 256-layer ziggurat. Built on first use (:mod:`spikevae.brian._build`); the torch implementation draws the same law.
"""
from libc.math cimport exp, expf, fabs, floor, lgamma, log, sqrt, cos
from libc.stdint cimport uint64_t

cdef double TWO_PI = 6.283185307179586


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double _uniform(uint64_t* s) noexcept nogil:
    """A double in (0, 1] from the SplitMix64 stream ``s``."""
    s[0] += <uint64_t>0x9E3779B97F4A7C15ULL
    return (<double>((_mix(s[0]) >> 11) + 1)) * 1.1102230246251565e-16


# ziggurat tables for Exp(1) with 53-bit mantissas (Marsaglia & Tsang 2000, as numpy lays them out)
cdef double _ke[256]
cdef double _we[256]
cdef double _fe[256]
cdef double ZIG_R = 7.69711747013104972


def _tables():
    cdef double m2 = 9007199254740992.0  # 2^53
    cdef double de = ZIG_R, te = ZIG_R, ve = 3.949659822581572e-3
    cdef double q = ve / exp(-de)
    cdef int i
    _ke[0] = (de / q) * m2
    _ke[1] = 0.0
    _we[0] = q / m2
    _we[255] = de / m2
    _fe[0] = 1.0
    _fe[255] = exp(-de)
    for i in range(254, 0, -1):
        de = -log(ve / de + exp(-de))
        _ke[i + 1] = (de / te) * m2
        te = de
        _fe[i] = exp(-de)
        _we[i] = de / m2


_tables()


cdef inline double _exponential(uint64_t* s) noexcept nogil:
    """One Exp(1) draw from the SplitMix64 stream ``s`` by the ziggurat."""
    cdef uint64_t ri
    cdef int idx
    cdef double x
    while True:
        s[0] += <uint64_t>0x9E3779B97F4A7C15ULL
        ri = _mix(s[0]) >> 3
        idx = <int>(ri & 0xFF)
        ri >>= 8
        x = <double>ri * _we[idx]
        if <double>ri < _ke[idx]:
            return x
        if idx == 0:
            return ZIG_R - log(_uniform(s))
        if (_fe[idx - 1] - _fe[idx]) * _uniform(s) + _fe[idx] < exp(-x):
            return x


cdef inline double _normal(uint64_t* s) noexcept nogil:
    cdef double u1 = _uniform(s), u2 = _uniform(s)
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2)


cdef double _poisson(double mu, uint64_t* s) noexcept nogil:
    """One Poisson(mu) draw: products of uniforms below 10, PTRS (transformed rejection) above."""
    cdef double p, L, slam, loglam, b, a, invalpha, vr, U, V, us
    cdef long k
    if mu <= 0.0:
        return 0.0
    if mu < 10.0:
        L = exp(-mu)
        k = 0
        p = _uniform(s)
        while p > L:
            k += 1
            p *= _uniform(s)
        return <double>k
    slam = sqrt(mu)
    loglam = log(mu)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        U = _uniform(s) - 0.5
        V = _uniform(s)
        us = 0.5 - fabs(U)
        k = <long>floor((2.0 * a / us + b) * U + mu + 0.43)
        if us >= 0.07 and V <= vr:
            return <double>k
        if k < 0 or (us < 0.013 and V > us):
            continue
        if log(V) + log(invalpha) - log(a / (us * us) + b) <= -mu + k * loglam - lgamma(k + 1.0):
            return <double>k


cdef inline double _softplus(double y) noexcept nogil:
    return y + log(1.0 + exp(-y)) if y > 0.0 else log(1.0 + exp(y))


ctypedef fused real:
    float
    double


def relaxed_counts(const real[::1] lam, double t, double p_trunc, uint64_t seed, bint hard, double skip_after,
                   double gaussian_after, real[::1] z, real[::1] dz, Py_ssize_t i0, Py_ssize_t i1):
    """Counts of elements ``i0:i1`` into ``z`` and their derivatives ``Σ σ(1 − σ)·T/(λt)`` into ``dz``
    (releases the GIL). The window of each rate is :func:`spikevae.models.poisson.window_edges`'."""
    cdef Py_ssize_t i
    cdef uint64_t s
    cdef double r, inv_r, lt, ya, a, b, T, zi, di, sg, y, sp, var, sd, eps, inv_t = 1.0 / t
    cdef double y_low = log(1.0 / p_trunc)  # log(max(λt, 1)/p) of every rate with λt <= 1
    # the window and the tail of every rate with λt <= 1 are the same: computed once
    cdef double a_low = 1.0 - t * y_low, b_low = 1.0 + 0.5 * t * y_low
    cdef double y_tail_low = (1.0 - b_low) * inv_t
    cdef double sp_low = _softplus(y_tail_low)
    cdef double dtail_low = b_low / (1.0 + exp(-y_tail_low)) + t * sp_low
    cdef bint gauss
    with nogil:
        for i in range(i0, i1):
            s = _mix(seed ^ _mix(<uint64_t>(i + 1)))
            r = lam[i]
            if r < 1e-30:
                r = 1e-30
            inv_r = 1.0 / r
            lt = r * t
            if lt <= 1.0:
                a = a_low
                b = b_low
            else:
                ya = log(lt / p_trunc)
                a = 1.0 - t * ya
                b = 1.0 + 0.5 * t * ya
            T = 0.0
            zi = 0.0
            di = 0.0
            gauss = False
            if r * a > skip_after:
                zi = _poisson(r * a, &s)
                T = a
            if r * (b - T) > gaussian_after:  # T only grows below: checked once
                y = (1.0 - T) * inv_t
                sp = _softplus(y)
                sg = 1.0 / (1.0 + exp(-y))
                var = r * t * (sp - sg)
                sd = sqrt(var) if var > 1e-300 else 1e-150
                eps = _normal(&s)
                if hard:
                    zi += _poisson(r * (1.0 - T), &s) if T < 1.0 else 0.0
                else:
                    zi += max(r * t * sp + sd * eps, 0.0)
                # derivative of mean + sd·ε with T = Γ/λ, times λt (divided by λt below)
                di += (t * sp + sg * T + (t * (sp - sg) + sg * sg * T) / (2.0 * sd) * eps) * r * t
                gauss = True
            else:
                while True:
                    T += _exponential(&s) * inv_r
                    if T >= b:
                        break
                    y = (1.0 - T) * inv_t
                    sg = 1.0 if y > 40.0 else 1.0 / (1.0 + exp(-y))  # σ(40) is 1 in double precision
                    if hard:
                        zi += 1.0 if T < 1.0 else 0.0
                    else:
                        zi += sg
                    di += sg * (1.0 - sg) * T
            di *= inv_r * inv_t
            if not gauss:  # the arrivals past b, by their expectation (spikevae.models.poisson.tail_terms)
                if lt <= 1.0:
                    if not hard:
                        zi += lam[i] * t * sp_low
                    di += dtail_low
                else:
                    y = (1.0 - b) * inv_t
                    sp = _softplus(y)
                    if not hard:
                        zi += lam[i] * t * sp  # 0 for a zero rate
                    di += b / (1.0 + exp(-y)) + t * sp
            z[i] = <real>zi
            dz[i] = <real>di
