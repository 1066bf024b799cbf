// The `mend demo` report as one self-contained HTML page: the report JSON embedded as data, and
// an inline script (report/report.js, embedded by demo_html_assets.h.in) that draws the summary,
// the SVG charts and the tables from it when the page is opened. The C++ side only assembles the
// page: nothing from the data is ever written into markup here, so escaping reduces to keeping the
// data inside its <script>.
#include <string>
#include <string_view>

#include "demo_html_assets.h"
#include "demo_report.h"

namespace mend::app {
namespace {

// The page around the data and the script. A Content-Security-Policy forbids loading anything
// (self-contained by construction, and a second line of defence should markup ever slip in).
constexpr std::string_view kHead =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'\">\n"
    "<meta name=\"generator\" content=\"mend demo\">\n"
    "<title>mend demo report</title>\n"
    "<style>";

constexpr std::string_view kBodyStart = R"(</style>
</head>
<body>
<main>
<pre id="render-errors"></pre>
<script>
window.onerror = function (message, source, line, column) {
  var box = document.getElementById('render-errors');
  if (box) box.appendChild(document.createTextNode(String(message) +
      (line ? ' (line ' + line + ':' + column + ')' : '') + '\n'));
  return false;
};
</script>
<header>
<h1 id="report-title">mend demo report</h1>
<p class="meta" id="report-meta"></p>
</header>
<noscript><p>This report draws its summary, charts and tables with JavaScript; the data is in the
page source, in the script element with id "report-data".</p></noscript>
<section id="summary" class="cards" aria-label="summary"></section>
<figure data-chart="outcomes" data-drawn="false">
<figcaption><h2>Outcomes over time</h2>
<p>Tasks finished per time bucket, stacked by status. Dashed lines are the chaos the demo
injected, numbered as in the chaos timeline below.</p></figcaption>
<div class="legend"></div><div class="chart-body"></div>
</figure>
<figure data-chart="agents" data-drawn="false">
<figcaption><h2>Agents: circuit state and health</h2>
<p>One lane per agent: its circuit breaker's state as sampled during the run, its health as the
thin strip beneath, and the chaos, restarts and self-healing that hit it.</p></figcaption>
<div class="legend"></div><div class="chart-body"></div>
</figure>
<figure data-chart="latency" data-drawn="false">
<figcaption><h2>Latency distribution</h2>
<p>Time from submission to answer of every task, on a log scale, stacked by status; p50, p95 and
p99 marked.</p></figcaption>
<div class="legend"></div><div class="chart-body"></div>
</figure>
<div id="tables" class="tables"></div>
</main>
<script type="application/json" id="report-data">)";

constexpr std::string_view kScriptStart = R"(</script>
<script>)";

constexpr std::string_view kTail = R"(</script>
</body>
</html>
)";

// JSON text made safe inside <script>: '<', '>' and '&' occur in JSON only inside strings,
// where \u escapes mean the same characters, so no string in the data can close the element
// or open a comment.
std::string script_safe_json(const nlohmann::json& report) {
  // Invalid UTF-8 in a string becomes U+FFFD rather than an exception: the report still opens.
  const std::string text = report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + text.size() / 16);
  for (char c : text) {
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string render_demo_html(const nlohmann::json& report) {
  const std::string data = script_safe_json(report);
  std::string page;
  page.reserve(kHead.size() + demo_html::kStyle.size() + kBodyStart.size() + data.size() +
               kScriptStart.size() + demo_html::kScript.size() + kTail.size());
  page += kHead;
  page += demo_html::kStyle;
  page += kBodyStart;
  page += data;
  page += kScriptStart;
  page += demo_html::kScript;
  page += kTail;
  return page;
}

}  // namespace mend::app
