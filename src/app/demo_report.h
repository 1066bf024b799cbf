// File: src/app/demo_report.h (internal to the `mend` binary)
//
// The report of a `mend demo` run, as one JSON document, and its two renderings: the text
// printed at the end of the run and a self-contained HTML page with charts (no file or network
// access when opened: styles, data and the drawing script are inline; charts are SVG drawn by
// that script from the embedded data).
//
// The document (every time `t`/`*_s` is in seconds since the demo began):
//   {
//     "title": "mend demo", "version": "0.1.0",
//     "started_at": "2026-11-28T21:00:00.000Z", "duration_s": 121.4,
//     "base_url": "http://127.0.0.1:41234", "directory": "/tmp/mend-demo-XXXX",
//     "agents": ["senior-frontend-developer", ...],          // in configuration order
//     "chains": {"senior-frontend-developer": ["senior-full-stack-developer", ...], ...},
//     "task_types": ["code_review", "deployment", "ai_analysis", "security_scan"],
//     "tasks": [{"id": "task-1", "type": "code_review", "primary": "senior-frontend-developer",
//                "status": "succeeded|succeeded_after_retry|fallback|degraded|failed|error",
//                "answered_by": "...", "submitted_s": 0.12, "finished_s": 0.15,
//                "latency_s": 0.03, "attempts": 1, "retries": 0,
//                "escalation": "TKT-1"                            // only when one was opened
//               }, ...],
//     "outcomes": {"succeeded": 812, "fallback": 40, ...},      // counts by status
//     "samples": [{"t": 0.5, "agents": {"NAME": {"health": "healthy|unhealthy|unknown",
//                   "circuit": "closed|half_open|open|isolated", "in_flight": 0,
//                   "ready": 1, "replicas": 1}}}, ...],         // polled about twice a second
//     "chaos": [{"t": 12.0, "agent": "...", "action": "crash", "detail": "..."}, ...],
//     "circuit_transitions": [{"t": 30.1, "agent": "...", "from": "closed", "to": "open"}],
//     "restarts": [{"t": 14.2, "agent": "...", "reason": "crash|probe|recovery|api"}],
//     "healing": [{"t": 50.3, "agent": "...", "detail": "..."}],  // self-healing actions
//     "totals": {"tasks": 900, "attempts": 1100, "retries": 120, "fallbacks": 40,
//                "degraded": 12, "failed": 0, "circuit_transitions": 9, "restarts": 3,
//                "self_healing": 2, "notifications_sent": 14, "notifications_received": 14},
//     "records": [{"id": "INC-1", "kind": "incident|ticket|escalation", "level": "critical",
//                  "status": "open", "title": "...", "agent": "...", "error_type": "...",
//                  "occurrences": 3, "created_at": "...", "sla_due": "...",
//                  "war_room_url": "..."}],                       // optional keys may be absent
//     "notifications": [{"t": 31.0, "kind": "incident_opened", "record": "INC-1",
//                        "level": "critical"}]                    // as the webhook received them
//   }
//
// Thread-safety: the functions are pure; call them from any thread.
#ifndef MEND_APP_DEMO_REPORT_H_
#define MEND_APP_DEMO_REPORT_H_

#include <nlohmann/json.hpp>
#include <string>

namespace mend::app {

// The report as text for a terminal (ANSI colours when `color`), about 60 lines.
std::string render_demo_text_report(const nlohmann::json& report, bool color);

// The report as one self-contained HTML page. Each chart is a <figure data-chart="NAME"> that
// the page's script marks data-drawn="true" and data-marks="N" (the SVG elements it drew) once
// drawn; a script error is written into <pre id="render-errors">. Missing or odd members of the
// report are drawn as empty charts, never a script error.
std::string render_demo_html(const nlohmann::json& report);

}  // namespace mend::app

#endif  // MEND_APP_DEMO_REPORT_H_
