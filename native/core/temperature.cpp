// Temperature scaling NLL: argument checks, backend dispatch, and the description of a bad row.
// Per-row math: core/temperature.h.
#include "core/temperature.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "calmoe/error.h"
#include "core/dispatch.h"
#include "core/format.h"

namespace calmoe {
namespace {

using namespace temp;

using limits::kMaxElements;



[[noreturn]] void describe_issue(const TemperatureArg& arg, const KernelArgs& a, int64_t row, bool apply) {
  const std::string at = std::to_string(row);
  if (!apply && a.weights && !weight_ok(a.weights[row]))
    throw_range("weights[" + at + "] = " + fmt_f32(a.weights[row]) + ": expected a finite number >= 0");
  const float* p = a.scores + row * a.stride;
  RowNll r;
  if (apply) {
    std::vector<float> scratch(static_cast<std::size_t>(a.cols));
    r = row_apply(p, a.cols, a.beta, a.kind, a.tol, scratch.data());
  } else {
    r = row_nll(p, a.cols, a.labels[row], a.beta, a.kind, a.tol);
  }
  const std::string where = arg.name + ": row " + at + (r.col >= 0 ? ", column " + std::to_string(r.col) : "");
  switch (r.issue) {
    case kLabelRange:
      throw_range("labels[" + at + "] = " + std::to_string(a.labels[row]) + " is outside [0, " + std::to_string(a.cols) + ")");
    case kNonFinite:
      throw_range(where + " is not finite (" + fmt_f32(p[r.col]) + ")");
    case kProbRange:
      throw_range(where + " = " + fmt_f32(p[r.col]) + " is not a probability in [0, 1] (pass input: 'logits' for unnormalised scores)");
    case kRowSum:
      throw_range(where + " sums to " + fmt_f32(float(r.sum)) + "; probabilities must sum to 1 within sumTolerance = " + fmt_f32(float(a.tol)) +
                  " (pass input: 'logits' for unnormalised scores)");
    default:
      throw_runtime("temperature: the backend reported row " + at + " as invalid but it checks out on the host (backend disagreement; please report)");
  }
}

// Shape, temperature and tolerance checks shared by both entry points.
KernelArgs prepare(const TemperatureArg& arg, double temperature, bool need_labels) {
  const std::string& nm = arg.name;
  if (arg.rows < 1) throw_range(nm + ": expected at least one row, got " + std::to_string(arg.rows));
  if (arg.cols < 1) throw_range(nm + ": expected at least one column, got " + std::to_string(arg.cols));
  const int64_t stride = arg.row_stride == 0 ? arg.cols : arg.row_stride;
  if (stride < arg.cols) throw_range("rowStride: " + std::to_string(stride) + " is less than the " + std::to_string(arg.cols) + " columns");
  if (arg.cols > limits::kMaxIds || stride > kMaxElements || arg.rows > kMaxElements / stride)
    throw_range(nm + ": " + std::to_string(arg.rows) + " x " + std::to_string(stride) + " is larger than supported");
  if (!(std::isfinite(temperature) && temperature > 0)) throw_range("temperature: expected a finite number > 0, got " + fmt(temperature));
  const double beta = 1.0 / temperature;
  if (!std::isfinite(beta)) throw_range("temperature: " + fmt(temperature) + " is too small (1/T overflows)");
  if (!(arg.sum_tolerance >= 0 && arg.sum_tolerance <= 1)) throw_range("sumTolerance: expected a number in [0, 1], got " + fmt(arg.sum_tolerance));
  if (arg.scores == nullptr) throw_type(nm + ": missing data");
  if (need_labels && arg.labels == nullptr) throw_type("labels: missing data");
  KernelArgs a;
  a.scores = arg.scores;
  a.rows = arg.rows;
  a.cols = arg.cols;
  a.stride = stride;
  a.kind = arg.kind;
  a.labels = arg.labels;
  a.weights = arg.weights;
  a.tol = arg.sum_tolerance;
  a.beta = beta;
  return a;
}

}  // namespace

TemperatureEval temperature_nll(Device dev, const TemperatureArg& arg, double temperature) {
  const KernelArgs a = prepare(arg, temperature, true);
  TemperatureEval out;
  const int64_t bad = dispatch(dev, [&] { return cpu::temperature_reduce(a, out); },
                               [&] { return cuda::temperature_reduce(a, out); });
  if (bad >= 0) describe_issue(arg, a, bad, false);
  return out;  // weight 0 when every row has weight 0 (callers decide whether that is an error)
}

void temperature_apply(Device dev, const TemperatureArg& arg, double temperature, float* out) {
  if (out == nullptr) throw_type("out: missing buffer");
  const KernelArgs a = prepare(arg, temperature, false);
  const int64_t bad = dispatch(dev, [&] { return cpu::temperature_apply(a, out); },
                               [&] { return cuda::temperature_apply(a, out); });
  if (bad >= 0) describe_issue(arg, a, bad, true);
}

}  // namespace calmoe
