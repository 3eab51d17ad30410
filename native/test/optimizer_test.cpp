// Optimiser updates against the update rules PyTorch documents (torch.optim.SGD and AdamW), in
// double, over several steps; the learning-rate schedule's warm-up and cosine shape.
#include <cmath>

#include "core/optimizer.h"
#include "test_util.h"

using namespace calmoe;

namespace {

opt::Hyper hyper(const OptimizerConfig& o, int step) { return opt::hyper(o, o.lr, step, 1.0f); }

const double kGrads[5] = {0.3, -1.2, 0.05, 2.0, -0.7};

TEST(sgd_momentum_nesterov_weight_decay) {
  for (bool nesterov : {false, true}) {
    for (double momentum : {0.0, 0.9}) {
      OptimizerConfig o;
      o.kind = OptimizerKind::Sgd;
      o.lr = 0.1;
      o.weight_decay = 0.01;
      o.momentum = momentum;
      o.nesterov = nesterov && momentum > 0;
      float p = 1.5f, m = 0, v = 0;
      double rp = 1.5, rb = 0;
      for (int t = 1; t <= 5; ++t) {
        p = opt::update(hyper(o, t), p, float(kGrads[t - 1]), m, v, t == 1);
        // torch.optim.SGD: g += wd p; b = g (first) or mu b + g; g = g + mu b (nesterov) or b
        double g = kGrads[t - 1] + o.weight_decay * rp;
        if (momentum > 0) {
          rb = t == 1 ? g : momentum * rb + g;
          g = o.nesterov ? g + momentum * rb : rb;
        }
        rp -= o.lr * g;
        CHECK_CLOSE(p, rp, 1e-6, 1e-5);
      }
    }
  }
}

TEST(adamw_decoupled) {
  OptimizerConfig o;
  o.kind = OptimizerKind::AdamW;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  float p = -0.8f, m = 0, v = 0;
  double rp = -0.8, rm = 0, rv = 0;
  for (int t = 1; t <= 5; ++t) {
    p = opt::update(hyper(o, t), p, float(kGrads[t - 1]), m, v, t == 1);
    // torch.optim.AdamW: p -= lr wd p; m, v moments; p -= lr mhat / (sqrt(vhat) + eps)
    const double g = kGrads[t - 1];
    const double p_decayed = rp - o.lr * o.weight_decay * rp;
    rm = o.beta1 * rm + (1 - o.beta1) * g;
    rv = o.beta2 * rv + (1 - o.beta2) * g * g;
    const double mhat = rm / (1 - std::pow(o.beta1, t)), vhat = rv / (1 - std::pow(o.beta2, t));
    rp = p_decayed - o.lr * mhat / (std::sqrt(vhat) + o.eps);
    CHECK_CLOSE(p, rp, 1e-6, 1e-5);
  }
}

TEST(clipping_scales_the_gradient) {
  OptimizerConfig o;
  o.kind = OptimizerKind::Sgd;
  o.lr = 1;
  o.weight_decay = 0;
  opt::Hyper h = hyper(o, 1);
  h.grad_scale = 0.25f;
  float m = 0, v = 0;
  CHECK_CLOSE(opt::update(h, 1.0f, 2.0f, m, v, true), 0.5, 0, 1e-7);
}

TEST(schedule) {
  ScheduleConfig s;
  s.kind = ScheduleKind::Cosine;
  s.warmup_steps = 10;
  s.min_lr_ratio = 0.1;
  CHECK_CLOSE(schedule_lr(s, 1.0, 0, 110), 0.1, 0, 1e-12);   // linear warm-up: (step + 1) / warmup
  CHECK_CLOSE(schedule_lr(s, 1.0, 9, 110), 1.0, 0, 1e-12);
  CHECK_CLOSE(schedule_lr(s, 1.0, 10, 110), 1.0, 0, 1e-12);  // cosine starts at the peak
  CHECK_CLOSE(schedule_lr(s, 1.0, 60, 110), 0.55, 0, 1e-12); // halfway: floor + (1 - floor) / 2
  CHECK_CLOSE(schedule_lr(s, 1.0, 110, 110), 0.1, 0, 1e-12); // ends on the floor
  s.kind = ScheduleKind::Constant;
  CHECK_CLOSE(schedule_lr(s, 0.3, 50, 110), 0.3, 0, 1e-15);
}

}  // namespace

TEST_MAIN("optimizer")
