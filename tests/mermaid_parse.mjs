// Parse mermaid diagrams with mermaid itself (in jsdom), as the docs site's browser does.
// Usage: node mermaid_parse.mjs FILE...  (NODE_PATH names the folder holding mermaid and
// jsdom). Prints "ok <file>" per diagram; exits 1 with mermaid's message on the first error.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH || '.', 'x.js'));
const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;
const mermaid = (await import(require.resolve('mermaid'))).default;
for (const file of process.argv.slice(2)) {
  try {
    await mermaid.parse(fs.readFileSync(file, 'utf8'));
    console.log(`ok ${file}`);
  } catch (error) {
    console.log(`ERROR ${file}: ${error.message}`);
    process.exit(1);
  }
}
