// File: src/app/demo_view.h (internal to the `mend` binary)
//
// The live view of `mend demo`: what the run has seen so far (LiveView) and its two renderings,
// a frame redrawn in place on a terminal and a one-line progress summary for logs and pipes.
//
//   LiveView v = observations.view();
//   std::cout << render_live_frame(v, /*width=*/100, /*color=*/true);   // on a terminal
//   std::cout << render_progress_line(v) << "\n";                        // otherwise
//
// Thread-safety: plain values and pure functions.
#ifndef MEND_APP_DEMO_VIEW_H_
#define MEND_APP_DEMO_VIEW_H_

#include <map>
#include <string>
#include <vector>

namespace mend::app {

// One agent as GET /v1/agents last described it.
struct AgentRow {
  std::string name;
  std::string health = "unknown";
  std::string circuit = "unknown";
  int in_flight = 0;
  int max_concurrent = 0;
  int ready = 0;
  int replicas = 0;
  int restarts = 0;
};

struct LiveView {
  double elapsed_s = 0;
  double duration_s = 0;
  std::string base_url;
  int submitted = 0;
  int done = 0;
  std::map<std::string, int> outcomes;  // by outcome status
  int retries = 0;
  int fallbacks = 0;
  int escalations = 0;  // tasks whose outcome opened or joined a ticket or incident
  int circuit_transitions = 0;
  int restarts = 0;
  int self_healing = 0;
  int notifications = 0;  // received by the demo's webhook
  std::vector<AgentRow> agents;
  std::vector<std::string> recent;  // the last few timeline lines, oldest first
};

// The frame: a progress bar, one row per agent (health, circuit, in flight, ready replicas,
// restarts), the running counters and the recent timeline. Every line ends in "\x1b[K" (clear to
// the end of the line) and '\n'; `color` adds ANSI colours. At most `width` visible columns.
std::string render_live_frame(const LiveView& view, int width, bool color);

// "[ 45.0 s of 100] tasks 360/365: succeeded 300, after retry 30, fallback 20, degraded 5,
// failed 0; retries 45; circuits not closed: ollama-integration-specialist open"
std::string render_progress_line(const LiveView& view);

}  // namespace mend::app

#endif  // MEND_APP_DEMO_VIEW_H_
