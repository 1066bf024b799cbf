// File: mend/server/metrics.h
//
// A small Prometheus metrics registry: counters, gauges and histograms with labels, and gauges or
// counters whose values are computed when scraped. render() writes the text exposition format
// 0.0.4 that Prometheus scrapes from `mend serve`'s GET /metrics.
//
//   mend::MetricsRegistry metrics;
//   mend::CounterFamily& tasks = metrics.counter("mend_tasks_total",
//       "Tasks finished, by outcome.", {"outcome"});
//   tasks.with({"fallback"}).inc();                 // label values in label-name order
//   mend::HistogramFamily& latency = metrics.histogram("mend_task_duration_seconds",
//       "Task latency from submission to outcome.", {"outcome"},
//       mend::default_latency_buckets());            // 0.005 .. 60 s
//   latency.with({"succeeded"}).observe(0.042);
//   mend::Gauge& in_flight = metrics.gauge("mend_tasks_in_flight", "Tasks running.", {}).with({});
//   in_flight.inc();
//   metrics.gauge_callback("mend_circuit_state", "0 closed, 1 half-open, 2 open.", {"agent"},
//       [&] { return std::vector<mend::Sample>{{{"reviewer"}, 2.0}}; });
//   std::string body = metrics.render();            // serve with kPrometheusTextContentType
//   metrics.value("mend_tasks_total", {"fallback"}); // 1, for tests and the CLI
//
// Output: families sorted by name, each with # HELP (left out when the help is empty) and
// # TYPE, then its series sorted by label values (compared in label-name order). A family without
// labels has its one series from the start, so it renders 0 before anything happened; a family
// with labels renders only the series that with() has created. Histograms render cumulative
// name_bucket{...,le="..."} lines ending with le="+Inf", then name_sum and name_count.
//
// Errors: invalid metric or label names (the Prometheus regexes; label names must not start with
// "__"; histograms may not use the label "le"), registering a name again with another type,
// other labels or other buckets, a name whose samples would collide with another family's
// (histogram "x" against counter "x_count"), a wrong number of label values, and a negative
// counter increment throw std::invalid_argument: programming errors, not conditions to handle.
//
// Label values must come from small, bounded sets (agent names, outcomes, error categories, never
// task ids): every label set ever seen stays in memory and in every scrape. Call with() once at
// startup for the label values you know, so that their series exist at 0 before the first event
// (rate() and increase() need the zero).
//
// Thread-safety: everything may be called from many threads at once. References returned by
// counter(), gauge(), histogram() and with() stay valid for the registry's lifetime (series are
// never removed): cache them on hot paths. with() takes a family's shared lock (an exclusive one
// only the first time a label set is seen); Counter and Gauge updates are lock-free atomic
// operations; Histogram::observe is lock-free (two atomic adds). render() reads the atomics
// without stopping writers: a histogram's buckets and _count always agree, its _sum may lead or
// lag them by the observations in flight. Callbacks run on the thread that calls render() or
// value(), with no registry lock held, possibly from several threads at once.
#ifndef MEND_SERVER_METRICS_H_
#define MEND_SERVER_METRICS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mend {

// The Content-Type header value for render()'s output.
inline constexpr std::string_view kPrometheusTextContentType =
    "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType : std::uint8_t { counter, gauge, histogram };

// "counter", "gauge", "histogram": the word in a # TYPE line.
std::string_view to_string(MetricType type) noexcept;

// A number as Prometheus writes it: integers up to 2^53 without exponent ("1", "-3", "1048576"),
// everything else the shortest text that reads back as the same double ("0.005", "1e+21"), and
// "NaN", "+Inf", "-Inf".
std::string format_metric_value(double value);

// Histogram bucket upper bounds (seconds): Prometheus's defaults from 0.005 to 10, then 30, 60.
std::vector<double> default_latency_buckets();
// start, start*factor, ...: `count` bounds. Throws std::invalid_argument unless start > 0,
// factor > 1 and count >= 1.
std::vector<double> exponential_buckets(double start, double factor, int count);
// start, start+width, ...: `count` bounds. Throws std::invalid_argument unless width > 0 and
// count >= 1.
std::vector<double> linear_buckets(double start, double width, int count);

// One series of a callback family: label values in label-name order, and its value.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0.0;
};
using SampleCallback = std::function<std::vector<Sample>()>;

// A value that only goes up (it resets only when the process restarts).
class Counter {
 public:
  // Throws std::invalid_argument when amount is negative or NaN.
  void inc(double amount = 1.0);
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
  void add(double delta) noexcept { value_.fetch_add(delta, std::memory_order_relaxed); }
  void sub(double delta) noexcept { add(-delta); }
  void inc() noexcept { add(1.0); }
  void dec() noexcept { add(-1.0); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // finite and ascending; the +Inf bucket is implied
  // How many observations were <= each bound; one more entry, for +Inf, equal to count.
  std::vector<std::uint64_t> cumulative_counts;
  double sum = 0.0;
  std::uint64_t count = 0;
};

// Counts observations into buckets whose upper bounds are inclusive (an observation equal to a
// bound counts in that bound's bucket). NaN counts only in the +Inf bucket (and makes the sum
// NaN), as in the Prometheus Go client.
class Histogram {
 public:
  // `upper_bounds` must outlive the histogram (the family owns them).
  explicit Histogram(std::span<const double> upper_bounds);
  void observe(double value) noexcept;
  HistogramSnapshot snapshot() const;

 private:
  std::span<const double> upper_bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;  // not cumulative; last is +Inf
  std::atomic<double> sum_{0.0};
};

class MetricFamily {
 public:
  virtual ~MetricFamily() = default;
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  MetricType type() const noexcept { return type_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

 protected:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);
  // Throws std::invalid_argument unless there is one value per label name.
  void check_label_count(std::size_t count) const;

 private:
  friend class MetricsRegistry;
  // Appends the sample lines (not # HELP / # TYPE).
  virtual void render_samples(std::string& out) const = 0;
  // The value of sample `sample_name` (the family's name, or name_sum / name_count of a
  // histogram) for these label values; nullopt if there is no such series.
  virtual std::optional<double> find_value(
      std::string_view sample_name, std::span<const std::string_view> label_values) const = 0;

  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

namespace metrics_internal {

// Orders label-value lists lexicographically; compares vectors of strings with spans of
// string_views, so that lookups need no allocation.
struct LabelValuesLess {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

// A family's series by label values. Series are never removed, so references stay valid.
template <class Series>
class SeriesTable {
 public:
  template <class MakeSeries>
  Series& get_or_create(std::span<const std::string_view> label_values, MakeSeries make) {
    {
      std::shared_lock lock(mutex_);
      if (auto it = series_.find(label_values); it != series_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    auto it = series_.find(label_values);
    if (it == series_.end()) {
      std::vector<std::string> key(label_values.begin(), label_values.end());
      it = series_.emplace(std::move(key), make()).first;
    }
    return *it->second;
  }
  const Series* find(std::span<const std::string_view> label_values) const {
    std::shared_lock lock(mutex_);
    auto it = series_.find(label_values);
    return it == series_.end() ? nullptr : it->second.get();
  }
  // Calls visit(label_values, series) in label order, under the shared lock.
  template <class Visit>
  void for_each(Visit visit) const {
    std::shared_lock lock(mutex_);
    for (const auto& [labels, series] : series_) visit(labels, *series);
  }

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Series>, LabelValuesLess> series_;
};

// Counters and gauges alike: one value per series, rendered as it is.
template <class Value, MetricType kType>
class ScalarFamily : public MetricFamily {
 public:
  // The series for these label values (in label-name order), created at 0 the first time.
  Value& with(std::initializer_list<std::string_view> label_values);
  Value& with(const std::vector<std::string>& label_values);

 protected:
  ScalarFamily(std::string name, std::string help, std::vector<std::string> label_names);

 private:
  Value& with_values(std::span<const std::string_view> label_values);
  void render_samples(std::string& out) const override;
  std::optional<double> find_value(std::string_view sample_name,
                                   std::span<const std::string_view> label_values) const override;

  SeriesTable<Value> series_;
};

}  // namespace metrics_internal

class CounterFamily final : public metrics_internal::ScalarFamily<Counter, MetricType::counter> {
 private:
  friend class MetricsRegistry;
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names)
      : ScalarFamily(std::move(name), std::move(help), std::move(label_names)) {}
};

class GaugeFamily final : public metrics_internal::ScalarFamily<Gauge, MetricType::gauge> {
 private:
  friend class MetricsRegistry;
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
      : ScalarFamily(std::move(name), std::move(help), std::move(label_names)) {}
};

class HistogramFamily final : public MetricFamily {
 public:
  // The series for these label values (in label-name order), created empty the first time.
  Histogram& with(std::initializer_list<std::string_view> label_values);
  Histogram& with(const std::vector<std::string>& label_values);
  // Finite and ascending; the +Inf bucket is implied.
  const std::vector<double>& upper_bounds() const noexcept { return upper_bounds_; }

 private:
  friend class MetricsRegistry;
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> upper_bounds);
  Histogram& with_values(std::span<const std::string_view> label_values);
  void render_samples(std::string& out) const override;
  std::optional<double> find_value(std::string_view sample_name,
                                   std::span<const std::string_view> label_values) const override;

  std::vector<double> upper_bounds_;
  std::vector<std::string> bound_texts_;  // le values, formatted once
  metrics_internal::SeriesTable<Histogram> series_;
};

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family, or returns the one registered under this name if it has the same type
  // and label names (and, for histograms, the same buckets; the first help text stays).
  // Throws std::invalid_argument otherwise, or when a name is invalid.
  CounterFamily& counter(std::string_view name, std::string_view help,
                         std::vector<std::string> label_names);
  GaugeFamily& gauge(std::string_view name, std::string_view help,
                     std::vector<std::string> label_names);
  // `upper_bounds` must be strictly ascending and finite; a last bound of +Inf is allowed and
  // dropped (the +Inf bucket is always there).
  HistogramFamily& histogram(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names,
                             std::vector<double> upper_bounds = default_latency_buckets());

  // Families whose samples `callback` computes at each render() and value(). A callback that
  // throws, or returns samples with the wrong number of label values or a label set twice, does
  // not fail the scrape: its family renders the valid samples and a "# " comment line that says
  // what was dropped. A name can be given a callback only once.
  void gauge_callback(std::string_view name, std::string_view help,
                      std::vector<std::string> label_names, SampleCallback callback);
  void counter_callback(std::string_view name, std::string_view help,
                        std::vector<std::string> label_names, SampleCallback callback);

  // The whole registry in the text exposition format 0.0.4.
  std::string render() const;

  // The current value of one sample: a counter's or gauge's series (callbacks included), or a
  // histogram's name_sum / name_count. nullopt when there is no such family or series, or the
  // number of label values is wrong. Never creates a series.
  std::optional<double> value(std::string_view sample_name,
                              std::initializer_list<std::string_view> label_values = {}) const;
  std::optional<double> value(std::string_view sample_name,
                              const std::vector<std::string>& label_values) const;

 private:
  // Adds `family`, or returns the equal one already registered under its name.
  MetricFamily& add_family(std::unique_ptr<MetricFamily> family);
  std::optional<double> value_of(std::string_view sample_name,
                                 std::span<const std::string_view> label_values) const;

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::unique_ptr<MetricFamily>, std::less<>> families_;
  // Every sample name a family renders (histogram "x": x_bucket, x_sum, x_count) -> the family.
  std::map<std::string, MetricFamily*, std::less<>> sample_owners_;
};

}  // namespace mend

#endif  // MEND_SERVER_METRICS_H_
