export { readCsv, type CsvOptions, type CsvData } from './csv.js';
export { readNpy, parseNpy, npyToMatrix, formatNpy, type NpyArray, type NpyDtype, type NumericArray } from './npy.js';
export { readIdx, parseIdx } from './idx.js';
export { readDataset, readLabels, fileFormat, type Dataset, type DatasetFiles, type FileFormat } from './dataset.js';
export { classNamesOf, encodeLabels } from './labels.js';
export { readSafetensors, writeSafetensors, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';
