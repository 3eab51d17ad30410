// emulation: drift.cu uses CUB (not emulated); its entry points throw.
#include "calmoe/error.h"
#include "core/drift.h"
namespace calmoe::cuda {
void drift_features(const drift::FeatureArgs&, drift::FeatureOut&) { throw_runtime("drift: not emulated"); }
int64_t drift_bin_counts(const drift::BinArgs&, uint64_t*) { throw_runtime("drift: not emulated"); }
}  // namespace calmoe::cuda
