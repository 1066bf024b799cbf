// cockatiel_bench.mjs: what cockatiel's retry + circuit breaker cost per call, for
// bench/library.py (issue 6). Prints one JSON line per scenario:
//   {"library":"cockatiel","scenario":"success","ns_per_call":..., "calls":..., ...}
//
// Usage: node bench/lib/cockatiel_bench.mjs [--scenario success|transient30|all]
//          [--node-dir DIR] [--min-time SECONDS] [--warmup SECONDS]
//   --node-dir  where `npm ci --prefix bench/node` installed node_modules (default: bench/node
//               next to this script's directory)
//   --min-time  measured time per scenario (default 0.5 s); --warmup before it (default 0.3 s)
//
// Policy: wrap(retry(handleAll, {maxAttempts: 3, backoff: new ConstantBackoff(0)}),
//              circuitBreaker(handleAll, {halfOpenAfter: 60000,
//                                         breaker: new ConsecutiveBreaker(5)}))
// maxAttempts: 3 is three retries (cockatiel retries while retries < maxAttempts), as mend's
// max_retries = 3. Scenarios, the same as mend_bench's BM_Lib_*:
//   success      the protected function returns a value
//   transient30  attempt i fails when i % 10 is 1, 4 or 7 (30 % of attempts, never two in a
//                row), by throwing one prebuilt Error; every call succeeds after at most one retry
// Note: cockatiel waits out even a zero backoff with setTimeout(0), which Node runs after at
// least 1 ms, so in transient30 each retry costs about a millisecond of timer wait. That is
// cockatiel's behaviour with zero backoff, and it is what ns_per_call measures (wall time);
// cpu_ns_per_call (process CPU time per call) shows the machinery without the timer wait.
import { load, measure, parseArgs, scenarioFunctions, scenariosOf } from './common.mjs';

const opts = parseArgs(process.argv.slice(2));
const cockatiel = load(opts.nodeDir, 'cockatiel');
const { wrap, retry, circuitBreaker, handleAll, ConstantBackoff, ConsecutiveBreaker } = cockatiel;
const version = load(opts.nodeDir, 'cockatiel/package.json').version;

const policy = wrap(
  retry(handleAll, { maxAttempts: 3, backoff: new ConstantBackoff(0) }),
  circuitBreaker(handleAll, { halfOpenAfter: 60000, breaker: new ConsecutiveBreaker(5) }),
);

for (const scenario of scenariosOf(opts)) {
  const fn = scenarioFunctions[scenario];
  await measure('cockatiel', version, scenario, () => policy.execute(fn), opts);
}
