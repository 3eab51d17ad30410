// Null distributions of the Kolmogorov-Smirnov statistics. Method notes: core/ks_distribution.h.
#include "core/ks_distribution.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace calmoe::ks {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kLn2 = 0.69314718055994530942;
constexpr double kSqrt2Pi = 2.50662827463100050242;
// exp(x) underflows below this (cephes MINLOG, which SciPy's Smirnov cut-off uses).
constexpr double kMinLog = -708.3964185322641;
// Values below this are flushed to zero in the exact recursion (avoids slow subnormals).
constexpr double kTiny = 1e-280;

double clip01(double p) { return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p); }

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }  // b > 0

int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Equal sizes: P(D_{n,n} >= h/n) = 2 sum_{k>=1} (-1)^(k-1) R_k with R_k = C(2n, n-kh) / C(2n, n).
// With a_k = R_{k+1} / R_k = prod_{j<h} (n - kh - j) / (n + kh + j + 1), R_1 = a_0 and the sum is
// a_0 (1 - a_1 (1 - a_2 (1 - ...))): every factor is in [0, 1], so nothing cancels. The products
// are formed left to right as (num * a) / den, the natural order SciPy also uses, so that the
// result rounds the same way: where it lands just above 1 (at D = 1/n, 2/n, 3/n, where the true
// value is 1 or within 1e-12 of it) SciPy deems the exact attempt failed, and callers do the same.
double equal_sizes_sf_raw(int64_t n, int64_t h) {
  double nest = 0.0;
  for (int64_t k = n / h; k >= 0; --k) {  // the k = floor(n/h) factor is 0 (kept for the rounding)
    double a = 1.0;
    for (int64_t j = 0; j < h; ++j) a = double(n - k * h - j) * a / double(n + k * h + j + 1);
    nest = a * (1.0 - nest);
  }
  return 2.0 * nest;
}

// Exact product a * b = hi + lo (Dekker; exact in double barring overflow).
void two_prod(double a, double b, double* hi, double* lo) {
  const double split = 134217729.0;  // 2^27 + 1
  const double p = a * b;
  double t = split * a;
  const double ah = t - (t - a), al = a - ah;
  t = split * b;
  const double bh = t - (t - b), bl = b - bh;
  *hi = p;
  *lo = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

// ---- Durbin matrix (Marsaglia, Tsang & Wang 2003): P(D_n < d) = n!/n^n (H^n)_{kk} -------------

struct ScaledMatrix {
  int m = 0;
  std::vector<double> a;
  int64_t exponent = 0;  // value = a * 2^exponent
};

void normalize(ScaledMatrix& s) {
  double mx = 0.0;
  for (double v : s.a) mx = std::max(mx, std::fabs(v));
  if (mx == 0.0) return;
  int e = 0;
  std::frexp(mx, &e);
  if (e > 256 || e < -256) {
    for (double& v : s.a) v = std::ldexp(v, -e);
    s.exponent += e;
  }
}

ScaledMatrix multiply(const ScaledMatrix& x, const ScaledMatrix& y) {
  const int m = x.m;
  ScaledMatrix r;
  r.m = m;
  r.a.assign(std::size_t(m) * m, 0.0);
  r.exponent = x.exponent + y.exponent;
  for (int i = 0; i < m; ++i) {
    double* ri = r.a.data() + std::size_t(i) * m;
    for (int k = 0; k < m; ++k) {
      const double xik = x.a[std::size_t(i) * m + k];
      if (xik == 0.0) continue;
      const double* yk = y.a.data() + std::size_t(k) * m;
      for (int j = 0; j < m; ++j) ri[j] += xik * yk[j];
    }
  }
  normalize(r);
  return r;
}

double durbin_cdf(int64_t n, double d) {
  const double nd = double(n) * d;
  const int64_t k = int64_t(std::ceil(nd));
  const double h = double(k) - nd;
  const int m = int(2 * k - 1);
  std::vector<double> rf(std::size_t(m) + 2, 1.0);  // 1/i!
  for (int i = 1; i <= m + 1; ++i) rf[i] = rf[i - 1] / double(i);
  ScaledMatrix H;
  H.m = m;
  H.a.assign(std::size_t(m) * m, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      if (i - j + 1 >= 0) H.a[std::size_t(i) * m + j] = rf[i - j + 1];
  for (int i = 0; i < m; ++i) H.a[std::size_t(i) * m] -= std::pow(h, i + 1) * rf[i + 1];
  for (int j = 0; j < m; ++j) H.a[std::size_t(m - 1) * m + j] -= std::pow(h, m - j) * rf[m - j];
  if (2.0 * h - 1.0 > 0.0) H.a[std::size_t(m - 1) * m] += std::pow(2.0 * h - 1.0, m) * rf[m];

  ScaledMatrix R;
  R.m = m;
  R.a.assign(std::size_t(m) * m, 0.0);
  for (int i = 0; i < m; ++i) R.a[std::size_t(i) * m + i] = 1.0;
  for (int64_t e = n; e > 0; e >>= 1) {
    if (e & 1) R = multiply(R, H);
    if (e > 1) H = multiply(H, H);
  }
  const double v = R.a[std::size_t(k - 1) * m + (k - 1)];
  if (!(v > 0.0)) return 0.0;
  return clip01(std::exp(std::log(v) + double(R.exponent) * kLn2 + log_factorial_over_power(n)));
}

// ---- Pelz-Good expansion of P(D_n <= x) (Pelz & Good 1976; Simard & L'Ecuyer 2011, eq. 8) ------
double pelz_good_cdf(int64_t n, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double z = std::sqrt(double(n)) * x;
  const double z2 = z * z, z4 = z2 * z2, z6 = z4 * z2, z8 = z4 * z4;
  if (-kPi * kPi / 8.0 / z2 < -708.0) return 0.0;
  const double pi2 = kPi * kPi, pi4 = pi2 * pi2, pi6 = pi4 * pi2;
  const int K = std::max(1, int(std::ceil(16.0 * z / kPi)));
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int k = K; k >= 1; --k) {  // odd m = 2k - 1, terms exp(-pi^2 m^2 / (8 z^2))
    const double mm = double(2 * k - 1), m2 = mm * mm, m4 = m2 * m2, m6 = m4 * m2;
    const double q = std::exp(-pi2 * m2 / (8.0 * z2));
    s0 += q;
    s1 += (pi2 * m2 / 4.0 - z2) * q;
    s2 += (6.0 * z6 + 2.0 * z4 + (2.0 * z4 - 5.0 * z2) * pi2 * m2 / 4.0 + pi4 * (1.0 - 2.0 * z2) * m4 / 16.0) * q;
    s3 += (-30.0 * z6 - 90.0 * z8 + pi2 * (135.0 * z4 - 96.0 * z6) * m2 / 4.0 + pi4 * (212.0 * z4 - 60.0 * z2) * m4 / 16.0 +
           pi6 * (5.0 - 30.0 * z2) * m6 / 64.0) * q;
  }
  double e2 = 0, e3 = 0;  // all k: exp(-pi^2 k^2 / (2 z^2))
  for (int k = K; k >= 1; --k) {
    const double kk = double(k) * double(k);
    const double q = std::exp(-pi2 * kk / (2.0 * z2));
    e2 += kk * q;
    e3 += (3.0 * z2 - pi2 * kk) * kk * q;
  }
  const double K0 = kSqrt2Pi * s0 / z;
  const double K1 = kSqrt2Pi * s1 / (6.0 * z4);
  const double K2 = kSqrt2Pi * s2 / (72.0 * z6 * z) - pi2 * kSqrt2Pi * e2 / (36.0 * z2 * z);
  const double K3 = kSqrt2Pi * s3 / (6480.0 * z8 * z2) + pi2 * kSqrt2Pi * e3 / (216.0 * z6);
  const double rn = std::sqrt(double(n));
  return K0 + K1 / rn + K2 / double(n) + K3 / (double(n) * rn);
}

// ---- Smirnov: Birnbaum-Tingey sum ---------------------------------------------------------------
// stirlerr(k) = log k! - (k + 1/2) log k + k - log(2 pi) / 2 (Loader 2000), k >= 1.
double stirlerr(double k) {
  if (k < 16.0) return std::lgamma(k + 1.0) - (k + 0.5) * std::log(k) + k - 0.5 * std::log(2.0 * kPi);
  const double r = 1.0 / k, r2 = r * r;
  return r * (1.0 / 12 + r2 * (-1.0 / 360 + r2 * (1.0 / 1260 + r2 * (-1.0 / 1680 + r2 * (1.0 / 1188)))));
}

// P(D_n^+ >= x) = x sum_{j=0}^{J} C(n,j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1), J = n - floor(nx) - 1.
// With Stirling's formula for the binomial the large n log n parts cancel analytically:
//   log term_j = stirlerr(n) - stirlerr(j) - stirlerr(n-j) + log(n / (2 pi j (n-j))) / 2
//                + (n-j) log(1 - nx/(n-j)) + j log(1 + nx/j) - log(x + j/n),
// every piece of magnitude about nx, so each term keeps ~1e-13 relative precision for n to 10^6.
struct SmirnovTerms {
  int64_t n;
  double x, nx_hi, nx_lo;
  double log_term(int64_t j) const {
    const double nn = double(n), nx = nx_hi + nx_lo;
    if (j == 0) return nn * std::log1p(-x) - std::log(x);
    const double jj = double(j), m = double(n - j);
    const double r = nx / m;
    const double log_rest = r < 0.5 ? std::log1p(-r) : std::log(((m - nx_hi) - nx_lo) / m);
    const double lead = ((jj + nx_hi) + nx_lo) / nn;
    return stirlerr(nn) - stirlerr(jj) - stirlerr(m) + 0.5 * std::log(nn / (2.0 * kPi * jj * m)) + m * log_rest +
           jj * std::log1p(nx / jj) - std::log(lead);
  }
};

double smirnov_sum(const SmirnovTerms& t, int64_t J, bool full) {
  if (full || J < 64) {
    std::vector<double> f(std::size_t(J) + 1);
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j <= J; ++j) mx = std::max(mx, f[j] = t.log_term(j));
    double s = 0.0;
    for (int64_t j = 0; j <= J; ++j) s += std::exp(f[j] - mx);
    return t.x * std::exp(mx) * s;
  }
  // The terms are log-concave in j: find the mode by bisection on the sign of the difference,
  // then sum outwards until the terms fall 40 nats (e^-40 ~ 4e-18) below the largest.
  int64_t lo = 0, hi = J;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (t.log_term(mid + 1) > t.log_term(mid)) lo = mid + 1;
    else hi = mid;
  }
  const double mx = t.log_term(lo);
  double s = 1.0;
  for (int64_t j = lo + 1; j <= J; ++j) {
    const double d = t.log_term(j) - mx;
    if (d < -40.0) break;
    s += std::exp(d);
  }
  for (int64_t j = lo - 1; j >= 0; --j) {
    const double d = t.log_term(j) - mx;
    if (d < -40.0) break;
    s += std::exp(d);
  }
  return t.x * std::exp(mx) * s;
}

double smirnov_impl(int64_t n, double x, bool full) {
  if (std::isnan(x)) return x;
  if (x <= 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  if (n == 1) return 1.0 - x;
  const double nn = double(n);
  double hi = 0, lo = 0;
  two_prod(nn, x, &hi, &lo);
  double fl = std::floor(hi);
  double alpha = (hi - fl) + lo;
  if (alpha < 0.0) { fl -= 1.0; alpha += 1.0; }
  if (alpha >= 1.0) { fl += 1.0; alpha -= 1.0; }
  const int64_t nxfl = int64_t(fl);
  if (nxfl == 0 || (nxfl == 1 && alpha == 0.0)) {  // x <= 1/n: cdf = x (1 + x)^(n-1)
    return clip01(1.0 - x * std::exp(double(n - 1) * std::log1p(x)));
  }
  if (-2.0 * nn * x * x < kMinLog) return 0.0;
  if (nxfl >= n - 1) return clip01(std::exp(nn * std::log1p(-x)));  // x >= 1 - 1/n: (1 - x)^n
  if (n > 1000000) {  // SciPy's approximation for large n: exp(-(6nx + 1)^2 / (18 n))
    const double a = 6.0 * nn * x + 1.0;
    return clip01(std::exp(-a * a / 18.0 / nn));
  }
  SmirnovTerms t{n, x, hi, lo};
  return clip01(smirnov_sum(t, n - nxfl - 1, full));
}

}  // namespace

double log_factorial_over_power(int64_t n) {
  if (n <= 20) {
    double s = 0.0;
    for (int64_t i = 1; i <= n; ++i) s += std::log(double(i) / double(n));
    return s;
  }
  // Stirling: log n! - n log n = log(2 pi n)/2 - n + sum_j B_2j / (2j (2j-1) n^(2j-1))
  const double x = double(n), r = 1.0 / x, r2 = r * r;
  const double series = r * (1.0 / 12 + r2 * (-1.0 / 360 + r2 * (1.0 / 1260 + r2 * (-1.0 / 1680 + r2 * (1.0 / 1188)))));
  return 0.5 * std::log(2.0 * kPi * x) - x + series;
}

double two_sample_exact_cells(int64_t n1, int64_t n2, int64_t h) {
  const int64_t m = std::max(n1, n2), n = std::min(n1, n2);
  if (m == n) return double(n);
  const int64_t mg = m / gcd64(m, n);
  const double band = std::min(double(n) + 1.0, 2.0 * double(h) / double(mg) + 2.0);
  return (double(m) + 1.0) * band;
}

double two_sample_exact_sf(int64_t n1, int64_t n2, int64_t h, bool* in_range) {
  if (in_range) *in_range = true;
  if (h <= 0) return 1.0;
  const int64_t m = std::max(n1, n2), n = std::min(n1, n2);
  const int64_t g = gcd64(m, n), mg = m / g, ng = n / g;
  if (h > mg * n) return 0.0;  // beyond D = 1
  if (m == n) {
    const double p = equal_sizes_sf_raw(n, h);
    if (in_range) *in_range = p >= 0.0 && p <= 1.0;
    return clip01(p);
  }
  // Columns i = 0..m (the larger sample), rows j = 0..n; (i, j) is inside the band when
  // |i*ng - j*mg| < h. e(i, j): probability that a uniform random path to (i, j) has left it.
  std::vector<double> e(std::size_t(n) + 1, 1.0);
  const int64_t top0 = std::min(n, (h - 1) / mg);
  for (int64_t j = 0; j <= top0; ++j) e[j] = 0.0;
  std::vector<double> inv(std::size_t(m + n) + 1, 0.0);
  for (int64_t s = 1; s <= m + n; ++s) inv[s] = 1.0 / double(s);
  for (int64_t i = 1; i <= m; ++i) {
    const int64_t lo = std::max<int64_t>(0, floor_div(i * ng - h, mg) + 1);
    const int64_t hi = std::min<int64_t>(n, ceil_div(i * ng + h, mg) - 1);
    if (lo > hi) return 1.0;  // the band is closed: every path leaves it
    // The window only moves up, so e[j] for j above the previous window is still 1 (outside) and
    // below it is never read again. The cell under the window is outside (or j = -1, weight 0).
    const double di = double(i);
    double left = 1.0;
    for (int64_t j = lo; j <= hi; ++j) {
      const double w = inv[i + j];
      double v = (di * w) * e[j] + (double(j) * w) * left;
      if (v < kTiny) v = 0.0;
      e[j] = left = v;
    }
  }
  return clip01(e[n]);
}

double kolmogorov_sf(int64_t n, double x) {
  if (std::isnan(x) || n < 1) return std::numeric_limits<double>::quiet_NaN();
  const double nn = double(n);
  if (x >= 1.0) return 0.0;
  if (x <= 0.5 / nn) return 1.0;  // below the support of D_n
  const double t = nn * x;
  if (t <= 1.0) {  // Ruben-Gambino: P(D_n <= x) = n!/n^n (2t - 1)^n for 1/(2n) < x <= 1/n
    const double cdf = std::exp(log_factorial_over_power(n) + nn * std::log(2.0 * t - 1.0));
    return clip01(1.0 - cdf);
  }
  if (t >= nn - 1.0) return clip01(2.0 * std::exp(nn * std::log1p(-x)));  // 2 (1 - x)^n
  if (x >= 0.5) return clip01(2.0 * smirnov_sf(n, x));  // D+ >= x and D- >= x cannot both hold
  const double nxx = t * x;
  if (n <= 140) {
    if (nxx <= 4.0) return clip01(1.0 - durbin_cdf(n, x));
    return clip01(2.0 * smirnov_sf(n, x));  // Miller's approximation
  }
  if (nxx >= 370.0) return 0.0;
  if (nxx >= 2.2) return clip01(2.0 * smirnov_sf(n, x));
  double cdf;
  if (n <= 100000 && nn * std::pow(x, 1.5) <= 1.4) cdf = durbin_cdf(n, x);
  else cdf = pelz_good_cdf(n, x);
  return clip01(1.0 - clip01(cdf));
}

double smirnov_sf(int64_t n, double x) { return smirnov_impl(n, x, false); }
double smirnov_sf_full(int64_t n, double x) { return smirnov_impl(n, x, true); }

}  // namespace calmoe::ks
