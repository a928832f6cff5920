// Run a wasm32-wasi (preview1) command module under Node's node:wasi.
//
//   node --no-liftoff --no-warnings bench/peers/node_wasi.mjs FILE.wasm [ARGS...]
//
// --no-liftoff: skip V8's baseline tier so all code runs TurboFan-compiled
// (closest analogue to uqbar's ahead-of-time wasm2c + cc pipeline).
// The module's stdout/stderr go straight to this process's fds 1/2; the
// module's exit code becomes ours.
//
// NODE_WASI_TIME=1 prints, on stderr, after the module finishes:
//   compile_ms X   WebAssembly.compile: eager, full TurboFan compile of all
//                  functions (lazy compilation is switched off below)
//   run_ms Y       instantiate + _start, i.e. excluding node startup and compile
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { argv, env, exit, stderr } from 'node:process';
import { basename } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { WASI } from 'node:wasi';

// Node 20 (V8 11.3) defaults to --wasm-lazy-compilation: WebAssembly.compile
// only validates, and each function is compiled on its first call, i.e.
// inside the timed run. Force eager compilation so compile_ms is the whole
// (TurboFan, given --no-liftoff) compile and run_ms is pure execution.
setFlagsFromString('--no-wasm-lazy-compilation');

if (argv.length < 3) {
  stderr.write('usage: node --no-liftoff --no-warnings node_wasi.mjs FILE.wasm [ARGS...]\n');
  exit(2);
}
const file = argv[2];
const args = [basename(file), ...argv.slice(3)];
const timing = env.NODE_WASI_TIME === '1';

const bytes = await readFile(file);

const t0 = performance.now();
const module = await WebAssembly.compile(bytes);
const t1 = performance.now();

const wasi = new WASI({
  version: 'preview1',
  args,
  env: {},
  preopens: {},
  returnOnExit: true,   // proc_exit returns from start() instead of killing node
});
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
let code;
try {
  code = wasi.start(instance);
} catch (e) {
  stderr.write(`node_wasi: trap: ${e && e.stack || e}\n`);
  code = 134;
}
const t2 = performance.now();

if (timing) {
  stderr.write(`compile_ms ${(t1 - t0).toFixed(3)}\nrun_ms ${(t2 - t1).toFixed(3)}\n`);
}
// Set exitCode rather than exit() so buffered stderr writes drain.
process.exitCode = code ?? 0;
