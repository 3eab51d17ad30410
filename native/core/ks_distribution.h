// Null distributions of the Kolmogorov-Smirnov statistics (host-side double math, used by the
// drift op for p-values). The method choices follow scipy.stats.ks_2samp / scipy.stats.kstwo
// (SciPy 1.17), so that p-values agree with SciPy to far better than 1e-6; every formula is
// implemented here from the published mathematics:
//
// - two-sample exact: lattice-path counting (Hodges 1958), as the probability that a uniformly
//   random monotone path from (0,0) to (m,n) leaves the band |i/m - j/n| < d. The recursion runs on
//   the *exit* probability e(i,j) = (i e(i-1,j) + j e(i,j-1)) / (i+j), with e = 1 outside the band
//   (Viehmann 2021, arXiv:2102.08037): every step is a convex combination of numbers in [0,1], so
//   nothing overflows for any n and small p-values keep their relative precision (down to about
//   1e-280, below which intermediate values are flushed to zero: absolute error < 1e-270).
//   Equal sizes use the closed form 2 sum_k (-1)^(k-1) C(2n, n-kh) / C(2n, n) (Gnedenko-Korolyuk),
//   evaluated as a nested product so no term cancels. SciPy compatibility: where that value rounds
//   just above 1 (D = 1/n, 2/n, 3/n for some n, true p-value 1 or within 1e-12 of it) SciPy's
//   exact attempt "fails" and ks_2samp returns the asymptotic p-value instead; calmoe does the same
//   and reports method 'asymp' (at n = 7, D = 1/7 the two differ by 4e-5).
// - one-sample two-sided D_n (kstwo.sf): the Simard & L'Ecuyer (2011) algorithm: Ruben-Gambino
//   closed forms at the ends, the Durbin matrix (Marsaglia-Tsang-Wang 2003) for small n*d^2,
//   2 * Smirnov (exact for d >= 1/2, Miller's approximation otherwise) for large n*d^2, and the
//   Pelz-Good expansion for large n. (For n <= 140 and 0.754693 < n d^2 <= 4 SciPy uses the
//   Pomeranz recursion; here the Durbin matrix, also exact, computes the same probability.)
// - one-sided D_n^+ (Smirnov): the Birnbaum-Tingey sum for n <= 10^6 (summed around its mode in
//   log space), and SciPy's approximation exp(-(6nd+1)^2 / (18n)) for larger n.
#pragma once
#include <cstdint>

namespace calmoe::ks {

// Two-sided two-sample: P(D_{n1,n2} >= h / lcm(n1, n2)) under H0, exactly. h >= 0. `in_range`
// (optional) is set false where the equal-size closed form rounded outside [0, 1] before clipping:
// SciPy treats that as a failed exact computation and switches to the asymptotic method.
double two_sample_exact_sf(int64_t n1, int64_t n2, int64_t h, bool* in_range = nullptr);

// Lattice cells the exact computation for (n1, n2, h) visits: its cost.
double two_sample_exact_cells(int64_t n1, int64_t n2, int64_t h);

// P(D_n >= x) for the one-sample two-sided statistic (scipy.stats.kstwo.sf(x, n)). n >= 1.
double kolmogorov_sf(int64_t n, double x);

// P(D_n^+ >= x) for the one-sample one-sided statistic (scipy.special.smirnov(n, x)). n >= 1.
double smirnov_sf(int64_t n, double x);

// The same with every term of the Birnbaum-Tingey sum (no truncation around the mode): tests only.
double smirnov_sf_full(int64_t n, double x);

// log(n! / n^n), n >= 1.
double log_factorial_over_power(int64_t n);

}  // namespace calmoe::ks
