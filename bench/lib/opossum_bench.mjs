// opossum_bench.mjs: what opossum's circuit breaker costs per call, for bench/library.py
// (issue 6). Prints one JSON line per scenario:
//   {"library":"opossum","scenario":"success","ns_per_call":..., "calls":..., ...}
//
// Usage: node bench/lib/opossum_bench.mjs [--scenario success|transient30|all]
//          [--node-dir DIR] [--min-time SECONDS] [--warmup SECONDS] [--percentiles]
//   --node-dir  where `npm ci --prefix bench/node` installed node_modules (default: bench/node
//               next to this script's directory)
//   --min-time  measured time per scenario (default 0.5 s); --warmup before it (default 0.3 s)
//   --percentiles  keep opossum's default rollingPercentilesEnabled: true (see below)
//
// Policy: new CircuitBreaker(fn, {timeout: false, errorThresholdPercentage: 50,
//                                 resetTimeout: 60000, rollingPercentilesEnabled: false}),
// called with fire().
// opossum has no retry: in both scenarios each call is a hand-written loop around fire() that
// retries at once (no delay) up to 3 times, as mend's max_retries = 3 with zero backoff. Its
// per-call timeout (a setTimeout per fire(), 10 s by default) is turned off, since the other
// libraries run no timeout either. Latency percentiles are turned off too: with them on (the
// default), every failure reads the window's statistics, which concatenates and sorts the
// latencies of every call of the last 10 s, so a failure costs time in proportion to the call
// rate (and to how long the run has lasted, up to 10 s); that is metrics, not the breaker policy,
// and no other library here keeps latency percentiles. --percentiles measures it. Scenarios, the same as mend_bench's BM_Lib_*:
//   success      the protected function returns a value
//   transient30  attempt i fails when i % 10 is 1, 4 or 7 (30 % of attempts, never two in a
//                row), by throwing one prebuilt Error; every call succeeds after at most one
//                retry, and the breaker (50 % of a 10 s rolling window) never opens
import { load, measure, parseArgs, scenarioFunctions, scenariosOf } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['--percentiles']);
const CircuitBreaker = load(opts.nodeDir, 'opossum');
const version = load(opts.nodeDir, 'opossum/package.json').version;
const MAX_RETRIES = 3;

for (const scenario of scenariosOf(opts)) {
  const breaker = new CircuitBreaker(scenarioFunctions[scenario], {
    timeout: false, errorThresholdPercentage: 50, resetTimeout: 60000,
    rollingPercentilesEnabled: opts.percentiles,
  });
  // The retry opossum does not have: at once, at most MAX_RETRIES times, never when the
  // breaker itself refused.
  const call = async () => {
    for (let retry = 0; ; retry++) {
      try {
        return await breaker.fire();
      } catch (e) {
        if (retry >= MAX_RETRIES || CircuitBreaker.isOurError(e)) throw e;
      }
    }
  };
  const library = opts.percentiles ? 'opossum (percentiles on)' : 'opossum';
  try {
    await measure(library, version, scenario, call, opts, () => {
      if (breaker.opened) throw new Error('the breaker opened');
    });
  } finally {
    breaker.shutdown();  // stops its rolling-window timer, so that Node can exit
  }
}
