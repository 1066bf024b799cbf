#include "mend/server/metrics.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>
#include <utility>

namespace mend {
namespace {

// Every integer of at most this magnitude is exactly representable as a double.
constexpr double kLargestExactInteger = 9007199254740992.0;  // 2^53

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[32];
  std::to_chars_result result;
  if (value == std::trunc(value) && std::fabs(value) <= kLargestExactInteger) {
    result = std::to_chars(buffer, buffer + sizeof buffer, static_cast<std::int64_t>(value));
  } else {
    result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round trip
  }
  out.append(buffer, result.ptr);
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void append_escaped_help(std::string& out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// name{label="value",...,le="bound"} value\n; `le` empty: no le label.
template <class Values>
void append_sample(std::string& out, std::string_view name,
                   const std::vector<std::string>& label_names, const Values& label_values,
                   std::string_view le, double value) {
  out += name;
  if (!label_names.empty() || !le.empty()) {
    out += '{';
    auto value_it = label_values.begin();
    for (std::size_t i = 0; i < label_names.size(); ++i, ++value_it) {
      if (i > 0) out += ',';
      out += label_names[i];
      out += "=\"";
      append_escaped_label_value(out, *value_it);
      out += '"';
    }
    if (!le.empty()) {
      if (!label_names.empty()) out += ',';
      out += "le=\"";
      out += le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  append_value(out, value);
  out += '\n';
}

bool is_metric_name(std::string_view name) {
  if (name.empty()) return false;
  auto head = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
  };
  if (!head(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

bool is_label_name(std::string_view name) {
  if (name.empty()) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!head(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

void validate_names(std::string_view name, const std::vector<std::string>& label_names,
                    MetricType type) {
  if (!is_metric_name(name)) {
    throw std::invalid_argument(fmt::format(
        "metrics: invalid metric name \"{}\" (must match [a-zA-Z_:][a-zA-Z0-9_:]*)", name));
  }
  std::set<std::string_view> seen;
  for (const std::string& label : label_names) {
    if (!is_label_name(label)) {
      throw std::invalid_argument(
          fmt::format("metrics: {}: invalid label name \"{}\" (must match [a-zA-Z_][a-zA-Z0-9_]*)",
                      name, label));
    }
    if (label.starts_with("__")) {
      throw std::invalid_argument(fmt::format(
          "metrics: {}: label name \"{}\" starts with \"__\", which Prometheus reserves", name,
          label));
    }
    if (type == MetricType::histogram && label == "le") {
      throw std::invalid_argument(
          fmt::format("metrics: {}: a histogram cannot have a label named \"le\"", name));
    }
    if (!seen.insert(label).second) {
      throw std::invalid_argument(
          fmt::format("metrics: {}: label name \"{}\" appears twice", name, label));
    }
  }
}

// Checks the bounds and drops a last +Inf.
std::vector<double> normalized_bounds(std::string_view name, std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw std::invalid_argument(fmt::format("metrics: {}: bucket bound {} is not a finite number",
                                              name, format_metric_value(bounds[i])));
    }
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      throw std::invalid_argument(
          fmt::format("metrics: {}: bucket bounds must be strictly ascending ({} then {})", name,
                      format_metric_value(bounds[i - 1]), format_metric_value(bounds[i])));
    }
  }
  return bounds;
}

std::vector<std::string_view> as_views(const std::vector<std::string>& values) {
  return {values.begin(), values.end()};
}

std::span<const std::string_view> as_span(std::initializer_list<std::string_view> values) {
  return {values.begin(), values.size()};
}

// The sample names a family renders.
std::vector<std::string> sample_names_of(const MetricFamily& family) {
  if (family.type() != MetricType::histogram) return {family.name()};
  return {family.name() + "_bucket", family.name() + "_sum", family.name() + "_count"};
}

// A gauge or counter family whose samples a callback computes at scrape time.
class CallbackFamily final : public MetricFamily {
 public:
  CallbackFamily(std::string name, std::string help, MetricType type,
                 std::vector<std::string> label_names, SampleCallback callback)
      : MetricFamily(std::move(name), std::move(help), type, std::move(label_names)),
        callback_(std::move(callback)) {}

 private:
  struct Collected {
    std::vector<Sample> samples;  // valid, sorted by label values, unique
    std::string problems;         // one "# mend: ..." line per problem
  };

  Collected collect() const {
    Collected collected;
    std::vector<Sample> raw;
    try {
      raw = callback_();
    } catch (const std::exception& e) {
      add_problem(collected, fmt::format("callback failed: {}", e.what()));
      return collected;
    } catch (...) {
      add_problem(collected, "callback failed with an unknown exception");
      return collected;
    }
    std::size_t wrong_arity = 0;
    for (Sample& sample : raw) {
      if (sample.label_values.size() == label_names().size()) {
        collected.samples.push_back(std::move(sample));
      } else {
        ++wrong_arity;
      }
    }
    if (wrong_arity > 0) {
      add_problem(collected, fmt::format("dropped {} sample(s) without exactly {} label value(s)",
                                         wrong_arity, label_names().size()));
    }
    auto less = [](const Sample& a, const Sample& b) {
      return metrics_internal::LabelValuesLess{}(a.label_values, b.label_values);
    };
    std::stable_sort(collected.samples.begin(), collected.samples.end(), less);
    auto duplicates = std::unique(
        collected.samples.begin(), collected.samples.end(),
        [](const Sample& a, const Sample& b) { return a.label_values == b.label_values; });
    if (auto dropped = std::distance(duplicates, collected.samples.end()); dropped > 0) {
      collected.samples.erase(duplicates, collected.samples.end());
      add_problem(collected,
                  fmt::format("dropped {} sample(s) with a repeated label set", dropped));
    }
    return collected;
  }

  void add_problem(Collected& collected, std::string_view what) const {
    collected.problems += "# mend: ";
    collected.problems += name();
    collected.problems += ": ";
    for (char c : what) collected.problems += (c == '\n' || c == '\r') ? ' ' : c;
    collected.problems += '\n';
  }

  void render_samples(std::string& out) const override {
    Collected collected = collect();
    for (const Sample& sample : collected.samples) {
      append_sample(out, name(), label_names(), sample.label_values, {}, sample.value);
    }
    out += collected.problems;
  }

  std::optional<double> find_value(std::string_view sample_name,
                                   std::span<const std::string_view> label_values) const override {
    if (sample_name != name()) return std::nullopt;
    for (const Sample& sample : collect().samples) {
      if (std::equal(sample.label_values.begin(), sample.label_values.end(), label_values.begin(),
                     label_values.end())) {
        return sample.value;
      }
    }
    return std::nullopt;
  }

  SampleCallback callback_;
};

bool same_definition(const MetricFamily& existing, const MetricFamily& candidate) {
  if (dynamic_cast<const CallbackFamily*>(&existing) != nullptr ||
      dynamic_cast<const CallbackFamily*>(&candidate) != nullptr) {
    return false;  // two callbacks cannot both be the source of one family's samples
  }
  if (existing.type() != candidate.type() || existing.label_names() != candidate.label_names()) {
    return false;
  }
  if (existing.type() == MetricType::histogram) {
    return static_cast<const HistogramFamily&>(existing).upper_bounds() ==
           static_cast<const HistogramFamily&>(candidate).upper_bounds();
  }
  return true;
}

std::string describe(const MetricFamily& family) {
  std::string text =
      fmt::format("{} {{{}}}", to_string(family.type()), fmt::join(family.label_names(), ","));
  if (dynamic_cast<const CallbackFamily*>(&family) != nullptr) text += " (callback)";
  return text;
}

}  // namespace

std::string_view to_string(MetricType type) noexcept {
  switch (type) {
    case MetricType::counter:
      return "counter";
    case MetricType::gauge:
      return "gauge";
    case MetricType::histogram:
      return "histogram";
  }
  return "untyped";
}

std::string format_metric_value(double value) {
  std::string text;
  append_value(text, value);
  return text;
}

std::vector<double> default_latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1 || !std::isfinite(start) ||
      !std::isfinite(factor)) {
    throw std::invalid_argument(
        "metrics: exponential_buckets needs start > 0, factor > 1 and count >= 1");
  }
  std::vector<double> bounds;
  bounds.reserve(static_cast<std::size_t>(count));
  for (double bound = start; static_cast<int>(bounds.size()) < count; bound *= factor) {
    bounds.push_back(bound);
  }
  return bounds;
}

std::vector<double> linear_buckets(double start, double width, int count) {
  if (!(width > 0) || count < 1 || !std::isfinite(start) || !std::isfinite(width)) {
    throw std::invalid_argument("metrics: linear_buckets needs width > 0 and count >= 1");
  }
  std::vector<double> bounds;
  bounds.reserve(static_cast<std::size_t>(count));
  // start + i * width rather than repeated addition, so that errors do not accumulate.
  for (int i = 0; i < count; ++i) bounds.push_back(start + static_cast<double>(i) * width);
  return bounds;
}

// ---- series ----

void Counter::inc(double amount) {
  if (!(amount >= 0)) {
    throw std::invalid_argument(
        fmt::format("metrics: a counter only goes up (inc by {})", format_metric_value(amount)));
  }
  value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> upper_bounds)
    : upper_bounds_(upper_bounds),
      bucket_counts_(std::make_unique<std::atomic<std::uint64_t>[]>(upper_bounds.size() + 1)) {}

void Histogram::observe(double value) noexcept {
  // The first bound >= value: bounds are inclusive. NaN compares false everywhere: +Inf bucket.
  std::size_t bucket = std::isnan(value)
                           ? upper_bounds_.size()
                           : static_cast<std::size_t>(std::lower_bound(upper_bounds_.begin(),
                                                                       upper_bounds_.end(), value) -
                                                      upper_bounds_.begin());
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.upper_bounds.assign(upper_bounds_.begin(), upper_bounds_.end());
  snapshot.cumulative_counts.reserve(upper_bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.count = running;  // from the buckets, so that _count and le="+Inf" always agree
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

// ---- families ----

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void MetricFamily::check_label_count(std::size_t count) const {
  if (count == label_names_.size()) return;
  throw std::invalid_argument(fmt::format("metrics: {} has {} label(s) {{{}}}, given {} value(s)",
                                          name_, label_names_.size(), fmt::join(label_names_, ","),
                                          count));
}

namespace metrics_internal {

template <class Value, MetricType kType>
ScalarFamily<Value, kType>::ScalarFamily(std::string name, std::string help,
                                         std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), kType, std::move(label_names)) {
  if (this->label_names().empty()) with_values({});
}

template <class Value, MetricType kType>
Value& ScalarFamily<Value, kType>::with(std::initializer_list<std::string_view> label_values) {
  return with_values(as_span(label_values));
}

template <class Value, MetricType kType>
Value& ScalarFamily<Value, kType>::with(const std::vector<std::string>& label_values) {
  return with_values(as_views(label_values));
}

template <class Value, MetricType kType>
Value& ScalarFamily<Value, kType>::with_values(std::span<const std::string_view> label_values) {
  check_label_count(label_values.size());
  return series_.get_or_create(label_values, [] { return std::make_unique<Value>(); });
}

template <class Value, MetricType kType>
void ScalarFamily<Value, kType>::render_samples(std::string& out) const {
  series_.for_each([&](const std::vector<std::string>& labels, const Value& value) {
    append_sample(out, name(), label_names(), labels, {}, value.value());
  });
}

template <class Value, MetricType kType>
std::optional<double> ScalarFamily<Value, kType>::find_value(
    std::string_view sample_name, std::span<const std::string_view> label_values) const {
  if (sample_name != name()) return std::nullopt;
  const Value* value = series_.find(label_values);
  return value != nullptr ? std::optional(value->value()) : std::nullopt;
}

template class ScalarFamily<Counter, MetricType::counter>;
template class ScalarFamily<Gauge, MetricType::gauge>;

}  // namespace metrics_internal

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names,
                                 std::vector<double> upper_bounds)
    : MetricFamily(std::move(name), std::move(help), MetricType::histogram, std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {
  bound_texts_.reserve(upper_bounds_.size() + 1);
  for (double bound : upper_bounds_) bound_texts_.push_back(format_metric_value(bound));
  bound_texts_.emplace_back("+Inf");
  if (this->label_names().empty()) with_values({});
}

Histogram& HistogramFamily::with(std::initializer_list<std::string_view> label_values) {
  return with_values(as_span(label_values));
}

Histogram& HistogramFamily::with(const std::vector<std::string>& label_values) {
  return with_values(as_views(label_values));
}

Histogram& HistogramFamily::with_values(std::span<const std::string_view> label_values) {
  check_label_count(label_values.size());
  return series_.get_or_create(label_values,
                               [this] { return std::make_unique<Histogram>(upper_bounds_); });
}

void HistogramFamily::render_samples(std::string& out) const {
  const std::string bucket_name = name() + "_bucket";
  const std::string sum_name = name() + "_sum";
  const std::string count_name = name() + "_count";
  series_.for_each([&](const std::vector<std::string>& labels, const Histogram& histogram) {
    HistogramSnapshot snapshot = histogram.snapshot();
    for (std::size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
      append_sample(out, bucket_name, label_names(), labels, bound_texts_[i],
                    static_cast<double>(snapshot.cumulative_counts[i]));
    }
    append_sample(out, sum_name, label_names(), labels, {}, snapshot.sum);
    append_sample(out, count_name, label_names(), labels, {}, static_cast<double>(snapshot.count));
  });
}

std::optional<double> HistogramFamily::find_value(
    std::string_view sample_name, std::span<const std::string_view> label_values) const {
  const bool sum = sample_name == name() + "_sum";
  const bool count = sample_name == name() + "_count";
  if (!sum && !count) return std::nullopt;
  const Histogram* histogram = series_.find(label_values);
  if (histogram == nullptr) return std::nullopt;
  HistogramSnapshot snapshot = histogram->snapshot();
  return sum ? snapshot.sum : static_cast<double>(snapshot.count);
}

// ---- registry ----

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricFamily& MetricsRegistry::add_family(std::unique_ptr<MetricFamily> family) {
  std::unique_lock lock(mutex_);
  if (auto it = families_.find(family->name()); it != families_.end()) {
    if (same_definition(*it->second, *family)) return *it->second;
    throw std::invalid_argument(
        fmt::format("metrics: {} is already registered as {}, cannot register it as {}",
                    family->name(), describe(*it->second), describe(*family)));
  }
  const std::vector<std::string> sample_names = sample_names_of(*family);
  for (const std::string& sample_name : sample_names) {
    const MetricFamily* owner = nullptr;
    if (auto it = sample_owners_.find(sample_name); it != sample_owners_.end()) {
      owner = it->second;
    } else if (auto family_it = families_.find(sample_name); family_it != families_.end()) {
      owner = family_it->second.get();  // a histogram's own name, which it renders no sample of
    }
    if (owner != nullptr) {
      throw std::invalid_argument(fmt::format("metrics: {}'s sample {} would collide with {} {}",
                                              family->name(), sample_name, to_string(owner->type()),
                                              owner->name()));
    }
  }
  MetricFamily* added = family.get();
  families_.emplace(added->name(), std::move(family));
  for (const std::string& sample_name : sample_names) sample_owners_.emplace(sample_name, added);
  return *added;
}

CounterFamily& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names) {
  validate_names(name, label_names, MetricType::counter);
  return static_cast<CounterFamily&>(add_family(std::unique_ptr<CounterFamily>(
      new CounterFamily(std::string(name), std::string(help), std::move(label_names)))));
}

GaugeFamily& MetricsRegistry::gauge(std::string_view name, std::string_view help,
                                    std::vector<std::string> label_names) {
  validate_names(name, label_names, MetricType::gauge);
  return static_cast<GaugeFamily&>(add_family(std::unique_ptr<GaugeFamily>(
      new GaugeFamily(std::string(name), std::string(help), std::move(label_names)))));
}

HistogramFamily& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                            std::vector<std::string> label_names,
                                            std::vector<double> upper_bounds) {
  validate_names(name, label_names, MetricType::histogram);
  std::vector<double> bounds = normalized_bounds(name, std::move(upper_bounds));
  return static_cast<HistogramFamily&>(
      add_family(std::unique_ptr<HistogramFamily>(new HistogramFamily(
          std::string(name), std::string(help), std::move(label_names), std::move(bounds)))));
}

void MetricsRegistry::gauge_callback(std::string_view name, std::string_view help,
                                     std::vector<std::string> label_names,
                                     SampleCallback callback) {
  validate_names(name, label_names, MetricType::gauge);
  if (!callback) throw std::invalid_argument(fmt::format("metrics: {}: empty callback", name));
  add_family(std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                              MetricType::gauge, std::move(label_names),
                                              std::move(callback)));
}

void MetricsRegistry::counter_callback(std::string_view name, std::string_view help,
                                       std::vector<std::string> label_names,
                                       SampleCallback callback) {
  validate_names(name, label_names, MetricType::counter);
  if (!callback) throw std::invalid_argument(fmt::format("metrics: {}: empty callback", name));
  add_family(std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                              MetricType::counter, std::move(label_names),
                                              std::move(callback)));
}

std::string MetricsRegistry::render() const {
  // Families are never removed: the pointers stay valid after the lock is released, and
  // callbacks run without it (one that registers a metric or calls value() cannot deadlock).
  std::vector<const MetricFamily*> families;
  {
    std::shared_lock lock(mutex_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  std::string out;
  for (const MetricFamily* family : families) {
    if (!family->help().empty()) {
      out += "# HELP ";
      out += family->name();
      out += ' ';
      append_escaped_help(out, family->help());
      out += '\n';
    }
    out += "# TYPE ";
    out += family->name();
    out += ' ';
    out += to_string(family->type());
    out += '\n';
    family->render_samples(out);
  }
  return out;
}

std::optional<double> MetricsRegistry::value(
    std::string_view sample_name, std::initializer_list<std::string_view> label_values) const {
  return value_of(sample_name, as_span(label_values));
}

std::optional<double> MetricsRegistry::value(std::string_view sample_name,
                                             const std::vector<std::string>& label_values) const {
  return value_of(sample_name, as_views(label_values));
}

std::optional<double> MetricsRegistry::value_of(
    std::string_view sample_name, std::span<const std::string_view> label_values) const {
  const MetricFamily* family = nullptr;
  {
    std::shared_lock lock(mutex_);
    auto it = sample_owners_.find(sample_name);
    if (it == sample_owners_.end()) return std::nullopt;
    family = it->second;
  }
  if (label_values.size() != family->label_names().size()) return std::nullopt;
  return family->find_value(sample_name, label_values);
}

}  // namespace mend
