// A naive, obviously-correct MoE in double precision, one example at a time (ScatterMoE-style
// reference): the loss of DESIGN.md's objectives as a plain function of the parameters, with the
// discrete or stop-gradient quantities (selected experts, tilted weights held constant, the
// filtered set, Switch's stopgrad(r), the balance loss's f) frozen at a base point, so that its
// finite differences are the gradient every backend must produce.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "calmoe/moe.h"

namespace ref {

using calmoe::Activation;
using calmoe::MoEConfig;
using calmoe::ObjectiveConfig;
using calmoe::ObjectiveKind;
using calmoe::Routing;
using V = std::vector<double>;

inline double act(Activation a, double x) {
  if (a == Activation::Relu) return x > 0 ? x : 0;
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1 + std::tanh(u));
}

// y = MLP(x) with layers dims[0] -> ... -> dims.back(), parameters from p (weight then bias).
inline V mlp(const MoEConfig& c, const std::vector<int64_t>& dims, const double* p, const V& x) {
  V h = x;
  for (std::size_t l = 0; l + 1 < dims.size(); ++l) {
    const int64_t in = dims[l], out = dims[l + 1];
    V o(out, 0.0);
    for (int64_t j = 0; j < out; ++j) {
      double s = p[in * out + j];
      for (int64_t i = 0; i < in; ++i) s += h[i] * p[i * out + j];
      o[j] = l + 2 < dims.size() ? act(c.activation, s) : s;
    }
    p += in * out + out;
    h = o;
  }
  return h;
}

inline V softmax(const V& v, double inv_t) {
  const double m = *std::max_element(v.begin(), v.end());
  V e(v.size());
  double s = 0;
  for (std::size_t j = 0; j < v.size(); ++j) s += (e[j] = std::exp((v[j] - m) * inv_t));
  for (double& x : e) x /= s;
  return e;
}

inline double nll(double p) { return -std::log(std::max(p, 1e-12)); }

// What is frozen at the base point.
struct Frozen {
  std::vector<std::vector<int>> selected;  // per row, ascending
  std::vector<double> switch_r;            // topk k = 1: r_k* at the base (stopgrad)
  std::vector<double> coef_term;           // 'term' weights at the base (robust / filtered part)
  std::vector<int> in_filter;              // robust-filtered membership
  bool filter_empty = true;
  std::vector<double> f;                   // balance: share of rows whose argmax is k
};

struct Eval {
  std::vector<double> loss;                 // per-example l_i
  std::vector<double> top1_loss;            // hard: the loss of the row's top-1 expert
  std::vector<std::vector<double>> r, p;    // routing weights, predictions
  std::vector<double> regret, dis;
  std::vector<double> mean_r;
};

inline Eval forward(const MoEConfig& c, const double* params, const std::vector<float>& temps, const float* x, const int32_t* y,
                    int64_t B, const Frozen* fz, Frozen* make) {
  const calmoe::ParamLayout lay = calmoe::moe_layout(c);
  std::vector<int64_t> rdims{c.input_dim}, edims{c.input_dim};
  rdims.insert(rdims.end(), c.router_hidden.begin(), c.router_hidden.end());
  rdims.push_back(c.experts);
  edims.insert(edims.end(), c.expert_hidden.begin(), c.expert_hidden.end());
  edims.push_back(c.classes);
  const int64_t K = c.experts, C = c.classes;
  Eval ev;
  ev.mean_r.assign(K, 0.0);
  if (make) make->f.assign(K, 0.0);
  for (int64_t i = 0; i < B; ++i) {
    V xi(x + i * c.input_dim, x + (i + 1) * c.input_dim);
    const V r = softmax(mlp(c, rdims, params + lay.router_offset, xi), 1.0 / c.router_temperature);
    ev.r.push_back(r);
    for (int64_t k = 0; k < K; ++k) ev.mean_r[k] += r[k] / double(B);
    std::vector<int> sel;
    if (fz) sel = fz->selected[i];
    else if (c.routing == Routing::Soft || c.routing == Routing::Hard) {
      for (int k = 0; k < K; ++k) sel.push_back(k);
    } else {
      std::vector<int> idx(K);
      for (int k = 0; k < K; ++k) idx[k] = k;
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return r[a] > r[b]; });
      sel.assign(idx.begin(), idx.begin() + c.top_k);
      std::sort(sel.begin(), sel.end());
    }
    if (make) {
      make->selected.push_back(sel);
      make->switch_r.push_back(r[sel[0]]);
      make->f[std::max_element(r.begin(), r.end()) - r.begin()] += 1.0 / double(B);
    }
    std::vector<V> pk;
    for (int k : sel) pk.push_back(softmax(mlp(c, edims, params + lay.expert_offset[k], xi), 1.0 / temps[k]));
    V p(C, 0.0);
    double li = 0, min_l = 1e300;
    if (c.routing == Routing::Hard) {
      for (std::size_t s = 0; s < sel.size(); ++s) li += r[sel[s]] * nll(pk[s][y[i]]);
      const int64_t best = std::max_element(r.begin(), r.end()) - r.begin();
      p = pk[best];
      ev.top1_loss.push_back(nll(pk[best][y[i]]));
    } else if (c.routing == Routing::TopK && c.top_k == 1) {
      const double scale = r[sel[0]] / (fz ? fz->switch_r[i] : r[sel[0]]);  // r / stopgrad(r)
      for (int64_t j = 0; j < C; ++j) p[j] = pk[0][j] * scale;
      li = nll(p[y[i]]);
    } else {
      double denom = 0;
      for (int k : sel) denom += r[k];
      if (c.routing == Routing::Soft) denom = 1;
      for (std::size_t s = 0; s < sel.size(); ++s)
        for (int64_t j = 0; j < C; ++j) p[j] += r[sel[s]] / denom * pk[s][j];
      li = nll(p[y[i]]);
    }
    double dis = 0;
    for (std::size_t s = 0; s < sel.size(); ++s) {
      min_l = std::min(min_l, nll(pk[s][y[i]]));
      double sq = 0;
      for (int64_t j = 0; j < C; ++j) sq += (pk[s][j] - p[j]) * (pk[s][j] - p[j]);
      double denom = 0;
      for (int k : sel) denom += r[k];
      dis += (c.routing == Routing::Soft || c.routing == Routing::Hard ? r[sel[s]] : (sel.size() == 1 ? 1.0 : r[sel[s]] / denom)) * sq;
    }
    ev.loss.push_back(li);
    ev.regret.push_back(std::max(0.0, li - min_l));
    ev.dis.push_back(dis);
    ev.p.push_back(p);
  }
  return ev;
}

inline V tilt(const V& l, double eta) {
  double m = -1e300;
  for (double v : l) m = std::max(m, eta * v);
  V w(l.size());
  double s = 0;
  for (std::size_t i = 0; i < l.size(); ++i) s += (w[i] = std::exp(eta * l[i] - m));
  for (double& v : w) v /= s;
  return w;
}

// The objective at params (frozen quantities from fz; when fz is null they are made into `make`).
inline double objective(const MoEConfig& c, const ObjectiveConfig& o, bool robust_active, const double* params,
                        const std::vector<float>& temps, const float* x, const int32_t* y, int64_t B, const Frozen* fz, Frozen* make) {
  const Eval ev = forward(c, params, temps, x, y, B, fz, make);
  const V& l = ev.loss;
  double mean = 0;
  for (double v : l) mean += v / double(B);
  double L = mean;
  const bool single = c.routing == Routing::Hard || (c.routing == Routing::TopK && c.top_k == 1);
  if (robust_active && o.kind == ObjectiveKind::Robust) {
    if (o.gradient == calmoe::TiltGradient::Through) {
      const V w = tilt(l, o.eta);
      L = 0;
      for (int64_t i = 0; i < B; ++i) L += w[i] * l[i];
    } else {
      const bool top1 = c.routing == Routing::Hard && o.hard_tilt == calmoe::HardTilt::Top1;
      if (make) make->coef_term = tilt(top1 ? ev.top1_loss : l, o.eta);
      const V& w = fz ? fz->coef_term : make->coef_term;
      L = 0;
      for (int64_t i = 0; i < B; ++i) L += w[i] * l[i];
    }
  } else if (robust_active && o.kind == ObjectiveKind::RobustFiltered) {
    if (make) {
      make->in_filter.assign(B, 0);
      if (!single) {
        double thr = o.tau_disagreement;
        if (o.median_disagreement) {
          V d = ev.dis;
          std::sort(d.begin(), d.end());
          thr = B % 2 ? d[B / 2] : 0.5 * (d[B / 2 - 1] + d[B / 2]);
        }
        for (int64_t i = 0; i < B; ++i) make->in_filter[i] = ev.regret[i] > o.tau_regret || ev.dis[i] > thr;
      }
      make->filter_empty = std::count(make->in_filter.begin(), make->in_filter.end(), 1) == 0;
    }
    const Frozen& F = fz ? *fz : *make;
    if (F.filter_empty) {
      L = 2 * mean;
    } else {
      V lr;
      for (int64_t i = 0; i < B; ++i) if (F.in_filter[i]) lr.push_back(l[i]);
      V w;
      if (o.gradient == calmoe::TiltGradient::Through) w = tilt(lr, o.eta);
      else {
        if (make) make->coef_term = tilt(lr, o.eta);
        w = F.coef_term;
      }
      for (std::size_t m = 0; m < lr.size(); ++m) L += w[m] * lr[m];
    }
  }
  if (o.balance_alpha > 0) {
    const V& f = fz ? fz->f : make->f;
    for (int64_t k = 0; k < c.experts; ++k)
      L += o.balance_alpha * double(c.experts) * (o.balance_form == calmoe::BalanceForm::Switch ? f[k] : ev.mean_r[k]) * ev.mean_r[k];
  }
  return L;
}

}  // namespace ref
