// The CLI part's door: the program lives in main.ts (the package's bin).
export { runDemo } from './demo.js';
