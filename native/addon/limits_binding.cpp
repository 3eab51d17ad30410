// The core's limits (calmoe/limits.h) as the frozen `limits` object: the one place JavaScript
// reads them from (src/limits.ts), so the TypeScript validators and the core cannot disagree.
#include <napi.h>

#include "addon/bindings.h"
#include "calmoe/limits.h"

namespace calmoe::addon {

void register_limits(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* name, double v) { o.Set(name, Napi::Number::New(env, v)); };
  set("maxElements", double(limits::kMaxElements));
  set("maxSampleRows", double(limits::kMaxSampleRows));
  set("maxIds", double(limits::kMaxIds));
  set("maxFitRows", double(limits::kMaxFitRows));
  set("maxCalibrationBins", double(limits::kMaxCalibrationBins));
  set("maxCalibrationCells", double(limits::kMaxCalibrationCells));
  set("maxStateRows", double(limits::kMaxStateRows));
  set("maxWeightedStateRows", double(limits::kMaxWeightedStateRows));
  set("maxWeight", double(limits::kMaxWeight));
  set("maxDriftBins", double(limits::kMaxDriftBins));
  set("maxWidth", double(limits::kMaxWidth));
  set("maxExperts", double(limits::kMaxExperts));
  set("maxHiddenLayers", double(limits::kMaxHiddenLayers));
  set("maxParams", double(limits::kMaxParams));
  set("maxBatchSize", double(limits::kMaxBatchSize));
  set("maxEpochs", double(limits::kMaxEpochs));
  set("maxSteps", double(limits::kMaxSteps));
  set("maxEta", limits::kMaxEta);
  set("maxInitStd", limits::kMaxInitStd);
  set("maxMomentum", limits::kMaxMomentum);
  set("maxHistory", double(limits::kMaxHistory));
  set("maxThreads", double(limits::kMaxThreads));
  o.Freeze();
  exports.Set("limits", o);
}

}  // namespace calmoe::addon
