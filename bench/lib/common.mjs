// common.mjs: what the Node peers' benchmarks share (cockatiel_bench.mjs, opossum_bench.mjs):
// the command line, loading a package from bench/node, the two scenarios' protected functions,
// and the timed loop that prints one JSON line per scenario for bench/library.py.
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

// --scenario success|transient30|all, --node-dir DIR, --min-time S, --warmup S, and the boolean
// flags a script names in `flags` (their options start false).
export function parseArgs(argv, flags = []) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const opts = { scenario: 'all', nodeDir: path.join(here, '..', 'node'), minTime: 0.5, warmup: 0.3 };
  for (const f of flags) opts[f.replace(/^--/, '')] = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--scenario') { opts.scenario = v; i++; }
    else if (a === '--node-dir') { opts.nodeDir = v; i++; }
    else if (a === '--min-time') { opts.minTime = Number(v); i++; }
    else if (a === '--warmup') { opts.warmup = Number(v); i++; }
    else if (flags.includes(a)) { opts[a.replace(/^--/, '')] = true; }
    else { console.error(`unknown argument: ${a}`); process.exit(2); }
  }
  if (!['success', 'transient30', 'all'].includes(opts.scenario) ||
      !(opts.minTime > 0 && opts.minTime <= 60) || !(opts.warmup >= 0 && opts.warmup <= 60)) {
    console.error('bad --scenario, --min-time or --warmup');
    process.exit(2);
  }
  return opts;
}

export function load(nodeDir, name) {
  const require = createRequire(path.join(path.resolve(nodeDir), 'package.json'));
  try {
    return require(name);
  } catch (e) {
    console.error(`error: cannot load ${name} from ${nodeDir}/node_modules (${e.code || e.message}); ` +
                  'install it with: npm ci --prefix bench/node');
    process.exit(3);
  }
}

// The scenarios' protected functions, the same as mend_bench's BM_Lib_*:
//   success      returns a value
//   transient30  attempt i fails when i % 10 is 1, 4 or 7 (30 % of attempts, never two in a
//                row), by throwing one prebuilt Error
export const counts = { attempts: 0, failures: 0 };
const TRANSIENT = new Error('transient');
const x = Number(process.pid % 7);
const work = (v) => v * 2 + 1;
export const scenarioFunctions = {
  success: () => { counts.attempts++; return work(x); },
  transient30: () => {
    const r = counts.attempts++ % 10;
    if (r === 1 || r === 4 || r === 7) { counts.failures++; throw TRANSIENT; }
    return work(x);
  },
};

export function scenariosOf(opts) {
  return opts.scenario === 'all' ? ['success', 'transient30'] : [opts.scenario];
}

// Calls `call` in batches of 100 for at least `seconds`; returns calls, elapsed ns and the
// process's CPU time in ns (user + system, all of Node's threads).
async function runFor(call, seconds) {
  const budget = BigInt(Math.round(seconds * 1e9));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let t = t0;
  let calls = 0;
  while (t - t0 < budget) {
    for (let k = 0; k < 100; k++) await call();
    calls += 100;
    t = process.hrtime.bigint();
  }
  const cpu = process.cpuUsage(cpu0);
  return { calls, ns: Number(t - t0), cpuNs: (cpu.user + cpu.system) * 1000 };
}

// Warms up, measures, runs `check` (it throws when the run is not valid) and prints the JSON
// line; a failed call or check ends the process with status 1.
export async function measure(library, version, scenario, call, opts, check = () => {}) {
  try {
    await runFor(call, opts.warmup);
    const a0 = counts.attempts;
    const f0 = counts.failures;
    const { calls, ns, cpuNs } = await runFor(call, opts.minTime);
    check();
    console.log(JSON.stringify({
      library, version, scenario, ns_per_call: ns / calls, cpu_ns_per_call: cpuNs / calls, calls,
      attempts_per_call: (counts.attempts - a0) / calls,
      retried_pct: 100 * (counts.failures - f0) / calls,
    }));
  } catch (e) {
    console.error(`error: a ${scenario} call failed: ${e && e.message}`);
    process.exit(1);
  }
}
