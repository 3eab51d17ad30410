export * from './calibration.js';
