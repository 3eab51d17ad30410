export * from './tilted.js';
