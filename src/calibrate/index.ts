export {
  type TemperatureInput,
  type TemperatureObjectiveOptions,
  type TemperatureObjective,
  type TemperatureFitOptions,
  type TemperatureFit,
  type ApplyTemperatureOptions,
  temperatureObjective,
  temperatureObjectiveSync,
  fitTemperature,
  fitTemperatureSync,
  applyTemperature,
  applyTemperatureSync,
} from './temperature.js';
export {
  type ExpertAssignment,
  type ExpertTemperatureOptions,
  type ExpertTemperatureFit,
  type ExpertTemperatureResult,
  fitExpertTemperatures,
  fitExpertTemperaturesSync,
} from './expert-temperatures.js';
export { type ExpertTensor, type ExpertTensorInput, type ExpertIdsInput, expertTensor } from '../audit/moe-outputs.js';
