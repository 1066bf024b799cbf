// Test support: headless Chromium run on a local HTML file, to see what a browser makes of it.
//
//   RenderedPage page = render_dom("/tmp/x/report.html");  // the DOM after the scripts ran
//   ASSERT_TRUE(page.ok) << page.error;
//   EXPECT_TRUE(chart_state(page.dom, "latency").drawn);
//   EXPECT_EQ(render_errors(page.dom), "");
//   RenderedPage shot = screenshot("/tmp/x/report.html", "/tmp/x/report.png", 1280, 2200);
//
// The browser is `chromium`, `chromium-browser` or `google-chrome` on PATH, or the program named
// by $MEND_CHROMIUM (scripts/setup.sh installs Debian's chromium). Each run gets a fresh profile
// in a temporary directory, its own process group (so that its helper processes go with it), a
// hard timeout after which the whole group is killed, and its stderr in a file (Chromium writes
// harmless D-Bus complaints there). Failures come back as `ok == false` with a reason that ends
// with the end of stderr; a missing browser says that scripts/setup.sh installs it.
//
// Thread-safety: the functions are independent; call them from any thread.
#ifndef MEND_TESTS_DEMO_CHROMIUM_H_
#define MEND_TESTS_DEMO_CHROMIUM_H_

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mend_test/temp_dir.h"

namespace mend::testing {

inline constexpr const char* kChromiumMissing =
    "headless Chromium is needed to render the demo's HTML report and was not found (looked for "
    "$MEND_CHROMIUM, chromium, chromium-browser, google-chrome on PATH); scripts/setup.sh installs "
    "Debian's chromium package";

namespace chromium_detail {

inline bool is_executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::string tail(const std::string& text, std::size_t bytes) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// Runs `program args...` with stdout and stderr to files; returns its wait status. Kills its
// whole process group when `timeout` passes (and after it ends, for helpers left behind).
inline int run(const std::string& program, const std::vector<std::string>& args,
               const std::string& stdout_path, const std::string& stderr_path,
               std::chrono::milliseconds timeout, bool* timed_out) {
  std::vector<std::string> all = {program};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const pid_t pid = out >= 0 && err >= 0 ? ::fork() : -1;
  if (pid < 0) {
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    throw std::runtime_error("chromium: cannot create its output files or fork");
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so that the group exists before any kill below
  ::close(out);
  ::close(err);
  *timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // WNOWAIT: the leader stays a zombie, so its pid (the group's id) cannot be reused before
    // the group is killed.
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      *timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace chromium_detail

// The browser's path, or "" when there is none.
inline std::string find_chromium() {
  if (const char* env = std::getenv("MEND_CHROMIUM"); env != nullptr && *env != '\0') {
    return chromium_detail::is_executable(env) ? std::string(env) : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    std::istringstream split(dirs);
    for (std::string dir; std::getline(split, dir, ':');) {
      if (dir.empty()) continue;
      std::string candidate = dir + "/" + name;
      if (chromium_detail::is_executable(candidate)) return candidate;
    }
  }
  return {};
}

// What a run of the browser gave: `ok`, or why not in `error` (with the end of its stderr).
struct RenderedPage {
  bool ok = false;
  std::string error;
  std::string dom;  // render_dom: the DOM serialized after the page's scripts ran
};

// Runs headless Chromium on `html_path` with `extra` arguments; its stdout in `dom`.
inline RenderedPage run_headless(const std::string& html_path, std::vector<std::string> extra,
                                 std::chrono::milliseconds timeout) {
  RenderedPage page;
  const std::string browser = find_chromium();
  if (browser.empty()) {
    page.error = kChromiumMissing;
    return page;
  }
  try {
    TempDir scratch("mend-chromium");
    std::vector<std::string> args = {
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--user-data-dir=" + scratch.file("profile"),
    };
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("file://" + std::filesystem::absolute(html_path).string());
    bool timed_out = false;
    const std::string out_path = scratch.file("stdout"), err_path = scratch.file("stderr");
    const int status = chromium_detail::run(browser, args, out_path, err_path, timeout, &timed_out);
    const std::string err = chromium_detail::read_file(err_path);
    if (timed_out) {
      page.error = "chromium: no result after " + std::to_string(timeout.count()) +
                   " ms; stderr: " + chromium_detail::tail(err, 2000);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      page.error = "chromium exited with wait status " + std::to_string(status) +
                   "; stderr: " + chromium_detail::tail(err, 2000);
    } else {
      page.ok = true;
      page.dom = chromium_detail::read_file(out_path);
    }
  } catch (const std::exception& e) {
    page.error = std::string("chromium: ") + e.what();
  }
  return page;
}

// The DOM of `html_path` as serialized after its scripts ran.
inline RenderedPage render_dom(const std::string& html_path,
                               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  RenderedPage page =
      run_headless(html_path, {"--virtual-time-budget=5000", "--dump-dom"}, timeout);
  if (page.ok && page.dom.find("<html") == std::string::npos) {
    page.ok = false;
    page.error =
        "chromium: --dump-dom printed no document: " + chromium_detail::tail(page.dom, 500);
  }
  return page;
}

// A PNG of `html_path` drawn in a `width` x `height` window, written to `png_path`.
inline RenderedPage screenshot(const std::string& html_path, const std::string& png_path, int width,
                               int height,
                               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const std::string target = std::filesystem::absolute(png_path).string();
  std::error_code ignored;
  std::filesystem::remove(target, ignored);
  RenderedPage run =
      run_headless(html_path,
                   {"--virtual-time-budget=5000", "--hide-scrollbars", "--screenshot=" + target,
                    "--window-size=" + std::to_string(width) + "," + std::to_string(height)},
                   timeout);
  if (run.ok && !std::filesystem::exists(target)) {
    run.ok = false;
    run.error = "chromium: no screenshot written to " + target;
  }
  return run;
}

// ---- reading a dumped DOM of the demo report (see src/app/demo_html_assets.h.in) ----------------

// The opening tag of <figure data-chart="CHART">, or "".
inline std::string figure_tag(const std::string& dom, const std::string& chart) {
  const std::size_t at = dom.find("<figure data-chart=\"" + chart + "\"");
  if (at == std::string::npos) return {};
  return dom.substr(at, dom.find('>', at) - at + 1);
}

// The value of attribute `name` in an opening `tag`, or "".
inline std::string tag_attribute(const std::string& tag, const std::string& name) {
  std::size_t at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return {};
  at += name.size() + 3;
  return tag.substr(at, tag.find('"', at) - at);
}

// What the page's script said about one chart.
struct ChartState {
  bool found = false;  // the figure is in the page
  bool drawn = false;  // data-drawn="true"
  int marks = -1;      // data-marks, -1 when absent
};

inline ChartState chart_state(const std::string& dom, const std::string& chart) {
  ChartState state;
  const std::string tag = figure_tag(dom, chart);
  state.found = !tag.empty();
  state.drawn = tag_attribute(tag, "data-drawn") == "true";
  const std::string marks = tag_attribute(tag, "data-marks");
  if (!marks.empty() && marks.find_first_not_of("0123456789") == std::string::npos &&
      marks.size() < 10) {
    state.marks = std::stoi(marks);
  }
  return state;
}

// The text of <pre id="render-errors"> (as serialized: HTML-escaped), or a note when it is
// missing; "" means the page's script reported no error.
inline std::string render_errors(const std::string& dom) {
  const std::string open = "<pre id=\"render-errors\">";
  std::size_t at = dom.find(open);
  if (at == std::string::npos) return "(the page has no <pre id=\"render-errors\">)";
  at += open.size();
  return dom.substr(at, dom.find("</pre>", at) - at);
}

}  // namespace mend::testing

#endif  // MEND_TESTS_DEMO_CHROMIUM_H_
