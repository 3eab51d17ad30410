// MoE per-row audit: argument checks, backend dispatch, and the description of a bad row.
// Per-row math: core/audit.h.
#include "core/audit.h"

#include <cstdlib>
#include <sstream>
#include <string>

#include "calmoe/error.h"
#include "core/dispatch.h"
#include "core/format.h"

namespace calmoe {
namespace {

using namespace audit;

using limits::kMaxElements;



[[noreturn]] void describe_issue(const KernelArgs& a, int64_t row) {
  const RowIssue b = audit_row(a, row);
  const MoeAuditArg& in = a.in;
  const int64_t K = in.slots, C = in.classes;
  const std::string at = std::to_string(row), slot = std::to_string(b.slot), col = std::to_string(b.col);
  const std::string tol = fmt_f32(a.tol);
  switch (b.issue) {
    case kRoutingValue:
      throw_range("routing: row " + at + ", column " + slot + " = " + fmt_f32(in.routing[row * K + b.slot]) + " is not a weight in [0, 1]");
    case kRoutingSum:
      throw_range("routing: row " + at + " sums to " + fmt_f32(b.sum) + "; routing weights must sum to 1 within sumTolerance = " + tol +
                  " (pass the renormalised weights of the active experts)");
    case kExpertId:
      throw_range("experts: row " + at + ", column " + slot + " = " + std::to_string(in.expert_ids[row * K + b.slot]) + " is outside [0, " +
                  std::to_string(in.experts) + ")");
    case kExpertProb:
      throw_range("expertProbs: row " + at + ", expert slot " + slot + ", column " + col + " = " + fmt_f32(in.expert_probs[(row * K + b.slot) * C + b.col]) +
                  " is not a probability in [0, 1]");
    case kExpertSum:
      throw_range("expertProbs: row " + at + ", expert slot " + slot + " sums to " + fmt_f32(b.sum) + "; probabilities must sum to 1 within sumTolerance = " + tol);
    case kMixtureProb:
      throw_range("mixture: row " + at + ", column " + col + " = " + fmt_f32(in.mixture[row * C + b.col]) + " is not a probability in [0, 1]");
    case kMixtureSum:
      throw_range("mixture: row " + at + " sums to " + fmt_f32(b.sum) + "; probabilities must sum to 1 within sumTolerance = " + tol);
    case kLabel:
      throw_range("labels[" + at + "] = " + std::to_string(in.labels[row]) + " is outside [0, " + std::to_string(C) + ")");
    default:
      throw_runtime("audit: the backend reported row " + at + " as invalid but it checks out on the host (backend disagreement; please report)");
  }
}

}  // namespace

void moe_audit_rows(Device dev, const MoeAuditArg& in, const MoeAuditOut& out) {
  if (in.rows < 1) throw_range("routing: expected at least one row, got " + std::to_string(in.rows));
  if (in.slots < 1 || in.slots > limits::kMaxIds) throw_range("routing: expected at least one column (one per expert slot), got " + std::to_string(in.slots));
  if (in.routing == nullptr) throw_type("routing: missing data");
  if (in.expert_ids == nullptr && in.experts != 0 && in.experts != in.slots)
    throw_range("numExperts: " + std::to_string(in.experts) + " differs from the " + std::to_string(in.slots) + " routing columns; pass expert ids for the active-expert layout");
  const int64_t E = in.expert_ids ? in.experts : in.slots;
  if (E < 1 || E > limits::kMaxIds) throw_range("numExperts: expected an integer in [1, " + std::to_string(limits::kMaxIds) + "], got " + std::to_string(E));
  const bool probs = in.expert_probs || in.mixture;
  if (probs && (in.classes < 1 || in.classes > limits::kMaxIds)) throw_range("classes: expected at least one class, got " + std::to_string(in.classes));
  if (in.labels && !in.mixture && !in.expert_probs) throw_type("labels: given without probabilities to score");
  if (in.rows > kMaxElements / in.slots || (probs && in.rows * in.slots > kMaxElements / in.classes))
    throw_range("routing: " + std::to_string(in.rows) + " rows x " + std::to_string(in.slots) + " experts is larger than supported");
  if (!(in.sum_tolerance >= 0 && in.sum_tolerance <= 1)) throw_range("sumTolerance: expected a number in [0, 1], got " + fmt(in.sum_tolerance));
  if ((out.disagreement || out.regret || out.own_probs) && !in.expert_probs)
    throw_type("expertProbs: needed for disagreement, regret and the top-1 expert's probabilities");
  if ((out.disagreement || out.loss || out.regret) && !in.mixture) throw_type("mixture: needed for disagreement, loss and regret");
  if ((out.loss || out.regret) && !in.labels) throw_type("labels: needed for loss and regret");
  KernelArgs a;
  a.in = in;
  a.in.experts = E;
  a.in.classes = probs ? in.classes : 0;
  a.out = out;
  a.tol = float(in.sum_tolerance);
  const int64_t bad = dispatch(dev, [&] { return cpu::moe_audit_rows(a); }, [&] { return cuda::moe_audit_rows(a); });
  if (bad >= 0) {
    KernelArgs inputs_only = a;
    inputs_only.out = MoeAuditOut{};  // describing a row must not write outputs
    describe_issue(inputs_only, bad);
  }
}

}  // namespace calmoe
