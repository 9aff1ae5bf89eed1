# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Compiled LCA Euler loop over a block of inputs, inhibition from the active units only.

For each input row, all steps run with the row's state in cache: threshold, gather the active
units, ``c = Σ_j a_j Gk[j, :]`` (four active rows per pass over ``c``), ``u += kb − k·u − c``.
The arithmetic is that of :func:`spikevae.lca.lca` (forward Euler, float64); only the order of
the inhibition sum differs (rounding-level differences). Built on first use (spikevae.lca._kernel).
"""
from libc.math cimport fabs

cdef extern from *:
    """
    /* c += a0 g0 + a1 g1 + a2 g2 + a3 g3 and c += a0 g0; restrict lets the compiler vectorise */
    static inline void spv_axpy4(double *restrict c, const double *restrict g0, const double *restrict g1,
                                 const double *restrict g2, const double *restrict g3,
                                 double a0, double a1, double a2, double a3, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) c[i] += a0 * g0[i] + a1 * g1[i] + a2 * g2[i] + a3 * g3[i];
    }
    static inline void spv_axpy1(double *restrict c, const double *restrict g0, double a0, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) c[i] += a0 * g0[i];
    }
    """
    void spv_axpy4(double* c, const double* g0, const double* g1, const double* g2, const double* g3,
                   double a0, double a1, double a2, double a3, Py_ssize_t n) noexcept nogil
    void spv_axpy1(double* c, const double* g0, double a0, Py_ssize_t n) noexcept nogil


cdef inline double _thr(double u, double lam, int kind) noexcept nogil:
    if kind == 0:  # soft
        if u > lam:
            return u - lam
        if u < -lam:
            return u + lam
        return 0.0
    if kind == 1:  # nonneg
        return u - lam if u > lam else 0.0
    return u if fabs(u) > lam else 0.0  # hard


def lca_rows(double[:, ::1] kb, double[:, ::1] Gk, double[:, ::1] u, double lam, double k, int n_steps,
             int kind, Py_ssize_t row0, Py_ssize_t row1):
    """Run ``n_steps`` Euler steps for rows ``row0:row1`` of ``u`` in place (releases the GIL)."""
    cdef Py_ssize_t K = Gk.shape[0]
    cdef Py_ssize_t b, i, t, nnz, n
    cdef double aj
    cdef double[:, ::1] work = cython_empty(2, K)
    cdef double[::1] c = work[0]
    cdef double[::1] av = work[1]
    cdef double* cp = &c[0]
    cdef double* ur
    cdef const double* kr
    cdef Py_ssize_t[::1] idx = cython_index(K)
    with nogil:
        for b in range(row0, row1):
            ur = &u[b, 0]
            kr = &kb[b, 0]
            nnz = 0
            for i in range(K):  # active units of the starting state
                aj = _thr(ur[i], lam, kind)
                cp[i] = 0.0
                if aj != 0.0:
                    idx[nnz] = i
                    av[nnz] = aj
                    nnz += 1
            for n in range(n_steps):
                t = 0
                while t + 4 <= nnz:  # four rows of G per pass over c
                    spv_axpy4(cp, &Gk[idx[t], 0], &Gk[idx[t + 1], 0], &Gk[idx[t + 2], 0], &Gk[idx[t + 3], 0],
                              av[t], av[t + 1], av[t + 2], av[t + 3], K)
                    t += 4
                while t < nnz:
                    spv_axpy1(cp, &Gk[idx[t], 0], av[t], K)
                    t += 1
                nnz = 0
                for i in range(K):  # Euler step, then the next step's active units, in one pass
                    ur[i] = ur[i] + ((kr[i] - cp[i]) - k * ur[i])
                    cp[i] = 0.0
                    aj = _thr(ur[i], lam, kind)
                    if aj != 0.0:
                        idx[nnz] = i
                        av[nnz] = aj
                        nnz += 1


cdef double[:, ::1] cython_empty(Py_ssize_t r, Py_ssize_t c):
    import numpy as np
    return np.zeros((r, c), dtype=np.float64)


cdef Py_ssize_t[::1] cython_index(Py_ssize_t n):
    import numpy as np
    return np.zeros(n, dtype=np.intp)
