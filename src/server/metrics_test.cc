#include "mend/server/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mend {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(Metrics, RendersTheExpositionFormatExactly) {
  MetricsRegistry metrics;
  CounterFamily& tasks =
      metrics.counter("mend_tasks_total", "Tasks finished, by outcome.", {"outcome"});
  tasks.with({"succeeded"}).inc(5);
  tasks.with({"fallback"}).inc();
  tasks.with({"fallback"}).inc(2);
  HistogramFamily& latency = metrics.histogram("mend_task_duration_seconds", "Task latency.",
                                               {"outcome"}, {0.005, 0.5, 1});
  latency.with({"succeeded"}).observe(0.25);
  latency.with({"succeeded"}).observe(1);
  latency.with({"succeeded"}).observe(3.5);
  metrics.gauge("mend_tasks_in_flight", "Tasks running.", {}).with({}).set(3);
  metrics.gauge_callback("mend_circuit_state", "0 closed, 1 half-open, 2 open.", {"agent"}, [] {
    return std::vector<Sample>{{{"reviewer"}, 2.0}, {{"builder"}, 0.0}};
  });

  EXPECT_EQ(metrics.render(),
            "# HELP mend_circuit_state 0 closed, 1 half-open, 2 open.\n"
            "# TYPE mend_circuit_state gauge\n"
            "mend_circuit_state{agent=\"builder\"} 0\n"
            "mend_circuit_state{agent=\"reviewer\"} 2\n"
            "# HELP mend_task_duration_seconds Task latency.\n"
            "# TYPE mend_task_duration_seconds histogram\n"
            "mend_task_duration_seconds_bucket{outcome=\"succeeded\",le=\"0.005\"} 0\n"
            "mend_task_duration_seconds_bucket{outcome=\"succeeded\",le=\"0.5\"} 1\n"
            "mend_task_duration_seconds_bucket{outcome=\"succeeded\",le=\"1\"} 2\n"
            "mend_task_duration_seconds_bucket{outcome=\"succeeded\",le=\"+Inf\"} 3\n"
            "mend_task_duration_seconds_sum{outcome=\"succeeded\"} 4.75\n"
            "mend_task_duration_seconds_count{outcome=\"succeeded\"} 3\n"
            "# HELP mend_tasks_in_flight Tasks running.\n"
            "# TYPE mend_tasks_in_flight gauge\n"
            "mend_tasks_in_flight 3\n"
            "# HELP mend_tasks_total Tasks finished, by outcome.\n"
            "# TYPE mend_tasks_total counter\n"
            "mend_tasks_total{outcome=\"fallback\"} 3\n"
            "mend_tasks_total{outcome=\"succeeded\"} 5\n");
}

TEST(Metrics, FamiliesWithoutLabelsRenderZeroFromTheStart) {
  MetricsRegistry metrics;
  metrics.counter("c_total", "", {});
  metrics.histogram("h", "", {}, {1});
  metrics.gauge("g", "", {"x"});  // labelled: no series until with()
  EXPECT_EQ(metrics.render(),
            "# TYPE c_total counter\n"
            "c_total 0\n"
            "# TYPE g gauge\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\n"
            "h_bucket{le=\"+Inf\"} 0\n"
            "h_sum 0\n"
            "h_count 0\n");
}

TEST(Metrics, SeriesAreSortedByLabelValuesInLabelNameOrder) {
  MetricsRegistry metrics;
  GaugeFamily& g = metrics.gauge("g", "", {"b", "a"});
  g.with({"2", "x"}).set(1);
  g.with({"10", "y"}).set(2);
  g.with({"2", "a"}).set(3);
  EXPECT_EQ(metrics.render(),
            "# TYPE g gauge\n"
            "g{b=\"10\",a=\"y\"} 2\n"
            "g{b=\"2\",a=\"a\"} 3\n"
            "g{b=\"2\",a=\"x\"} 1\n");
}

TEST(Metrics, FormatsNumbersAsPrometheusDoes) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(-0.0), "0");
  EXPECT_EQ(format_metric_value(1), "1");
  EXPECT_EQ(format_metric_value(-3), "-3");
  EXPECT_EQ(format_metric_value(1048576), "1048576");
  EXPECT_EQ(format_metric_value(9007199254740992.0), "9007199254740992");  // 2^53
  EXPECT_EQ(format_metric_value(1e21), "1e+21");
  EXPECT_EQ(format_metric_value(0.005), "0.005");
  EXPECT_EQ(format_metric_value(2.5), "2.5");
  EXPECT_EQ(format_metric_value(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(format_metric_value(1.5e-7), "1.5e-07");
  EXPECT_EQ(format_metric_value(kNaN), "NaN");
  EXPECT_EQ(format_metric_value(kInf), "+Inf");
  EXPECT_EQ(format_metric_value(-kInf), "-Inf");
  // Shortest round trip: the text reads back as the same double.
  for (double v : {0.1, 1.0 / 3, 123.456e-10, 6.02214076e23, -2.2250738585072014e-308}) {
    EXPECT_EQ(std::stod(format_metric_value(v)), v) << format_metric_value(v);
  }
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  MetricsRegistry metrics;
  metrics.counter("c", "a \\ backslash\nand a \"quote\"", {"path"})
      .with({"C:\\dir \"x\"\nnext"})
      .inc();
  EXPECT_EQ(metrics.render(),
            "# HELP c a \\\\ backslash\\nand a \"quote\"\n"
            "# TYPE c counter\n"
            "c{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n");
  // The unescaped value is the key.
  EXPECT_EQ(metrics.value("c", {"C:\\dir \"x\"\nnext"}), 1.0);
}

TEST(Metrics, HistogramBoundsAreInclusiveAndCountsCumulative) {
  MetricsRegistry metrics;
  Histogram& h = metrics.histogram("h", "", {}, {0.005, 0.1, 1}).with({});
  for (double v : {0.005, 0.005, 0.0050000001, 0.1, 1.0, 1.0000001, -5.0}) h.observe(v);
  HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.upper_bounds, (std::vector<double>{0.005, 0.1, 1}));
  // -5, 0.005, 0.005 | 0.0050000001, 0.1 | 1.0 | 1.0000001
  EXPECT_EQ(s.cumulative_counts, (std::vector<std::uint64_t>{3, 5, 6, 7}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 0.005 + 0.005 + 0.0050000001 + 0.1 + 1.0 + 1.0000001 - 5.0);
  const std::string text = metrics.render();
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"0.005\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"0.1\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"1\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"+Inf\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("h_count 7\n"));
  EXPECT_EQ(metrics.value("h_count"), 7.0);
  EXPECT_DOUBLE_EQ(*metrics.value("h_sum"), s.sum);
}

TEST(Metrics, HistogramCountsNaNAndInfinityInTheInfBucketOnly) {
  MetricsRegistry metrics;
  Histogram& h = metrics.histogram("h", "", {}, {1}).with({});
  h.observe(kNaN);
  h.observe(kInf);
  h.observe(-kInf);
  HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<std::uint64_t>{1, 3}));
  EXPECT_TRUE(std::isnan(s.sum));
  EXPECT_THAT(metrics.render(), HasSubstr("h_sum NaN\n"));
}

TEST(Metrics, HistogramBucketsAreValidated) {
  MetricsRegistry metrics;
  EXPECT_THROW(metrics.histogram("a", "", {}, {1, 0.5}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("b", "", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("c", "", {}, {kNaN}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("d", "", {}, {-kInf, 1}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("e", "", {}, {kInf, kInf}), std::invalid_argument);
  // A last +Inf is the implied bucket: dropped, and the same definition as without it.
  HistogramFamily& f = metrics.histogram("f", "", {}, {1, 2, kInf});
  EXPECT_EQ(f.upper_bounds(), (std::vector<double>{1, 2}));
  EXPECT_EQ(&metrics.histogram("f", "", {}, {1, 2}), &f);
  // No bounds: only +Inf.
  metrics.histogram("g", "", {}, {}).with({}).observe(3);
  EXPECT_THAT(metrics.render(), HasSubstr("# TYPE g histogram\n"
                                          "g_bucket{le=\"+Inf\"} 1\n"
                                          "g_sum 3\n"
                                          "g_count 1\n"));
}

TEST(Metrics, BucketHelpers) {
  const std::vector<double> latency = default_latency_buckets();
  EXPECT_EQ(latency.front(), 0.005);
  EXPECT_EQ(latency.back(), 60);
  EXPECT_TRUE(std::is_sorted(latency.begin(), latency.end()));
  EXPECT_EQ(exponential_buckets(0.5, 2, 4), (std::vector<double>{0.5, 1, 2, 4}));
  EXPECT_EQ(linear_buckets(1, 0.5, 3), (std::vector<double>{1, 1.5, 2}));
  EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 1, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 2, 0), std::invalid_argument);
  EXPECT_THROW(linear_buckets(0, 0, 3), std::invalid_argument);
  EXPECT_THROW(linear_buckets(0, 1, 0), std::invalid_argument);
}

TEST(Metrics, InvalidNamesThrowAtRegistration) {
  MetricsRegistry metrics;
  for (const char* bad : {"", "1abc", "a-b", "a b", "é", "a.b"}) {
    EXPECT_THROW(metrics.counter(bad, "", {}), std::invalid_argument) << bad;
    EXPECT_THROW(metrics.gauge_callback(bad, "", {}, [] { return std::vector<Sample>{}; }),
                 std::invalid_argument)
        << bad;
  }
  for (const char* bad : {"", "1a", "a:b", "a-b", "__reserved", "__"}) {
    EXPECT_THROW(metrics.gauge("g", "", {bad}), std::invalid_argument) << bad;
  }
  EXPECT_THROW(metrics.gauge("g", "", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("h", "", {"le"}), std::invalid_argument);
  EXPECT_THROW(metrics.gauge_callback("cb", "", {}, nullptr), std::invalid_argument);
  // Nothing was registered by the failed calls.
  EXPECT_EQ(metrics.render(), "");
  // The edges of the valid sets.
  EXPECT_NO_THROW(metrics.counter("a:b_c9", "", {"_x", "A9", "le"}));
  EXPECT_NO_THROW(metrics.counter(":x", "", {"_"}));
  EXPECT_NO_THROW(metrics.counter("_y", "", {}));
}

TEST(Metrics, WrongNumberOfLabelValuesThrows) {
  MetricsRegistry metrics;
  CounterFamily& c = metrics.counter("c", "", {"a", "b"});
  EXPECT_THROW(c.with({}), std::invalid_argument);
  EXPECT_THROW(c.with({"1"}), std::invalid_argument);
  EXPECT_THROW(c.with({"1", "2", "3"}), std::invalid_argument);
  EXPECT_THROW(c.with(std::vector<std::string>{"1"}), std::invalid_argument);
  EXPECT_THROW(metrics.gauge("g", "", {}).with({"x"}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("h", "", {"x"}).with({}), std::invalid_argument);
  try {
    c.with({"1"});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("c has 2 label(s) {a,b}, given 1 value(s)"));
  }
  EXPECT_EQ(metrics.render(), "# TYPE c counter\n# TYPE g gauge\ng 0\n# TYPE h histogram\n");
}

TEST(Metrics, RegisteringTheSameDefinitionAgainReturnsTheSameFamily) {
  MetricsRegistry metrics;
  CounterFamily& c = metrics.counter("c_total", "help", {"a"});
  c.with({"x"}).inc();
  CounterFamily& again = metrics.counter("c_total", "other help is ignored", {"a"});
  EXPECT_EQ(&again, &c);
  EXPECT_EQ(again.help(), "help");
  EXPECT_EQ(metrics.value("c_total", {"x"}), 1.0);

  EXPECT_THROW(metrics.gauge("c_total", "", {"a"}), std::invalid_argument);
  EXPECT_THROW(metrics.counter("c_total", "", {"b"}), std::invalid_argument);
  EXPECT_THROW(metrics.counter("c_total", "", {"a", "b"}), std::invalid_argument);
  EXPECT_THROW(metrics.counter("c_total", "", {}), std::invalid_argument);

  HistogramFamily& h = metrics.histogram("h", "", {}, {1, 2});
  EXPECT_EQ(&metrics.histogram("h", "", {}, {1, 2}), &h);
  EXPECT_THROW(metrics.histogram("h", "", {}, {1, 3}), std::invalid_argument);

  // Callbacks are one per name.
  auto none = [] { return std::vector<Sample>{}; };
  metrics.gauge_callback("cb", "", {}, none);
  EXPECT_THROW(metrics.gauge_callback("cb", "", {}, none), std::invalid_argument);
  EXPECT_THROW(metrics.gauge("cb", "", {}), std::invalid_argument);
  EXPECT_THROW(metrics.counter_callback("c_total", "", {"a"}, none), std::invalid_argument);
}

TEST(Metrics, SampleNamesMayNotCollideAcrossFamilies) {
  MetricsRegistry metrics;
  metrics.histogram("latency", "", {});
  EXPECT_THROW(metrics.counter("latency_count", "", {}), std::invalid_argument);
  EXPECT_THROW(metrics.gauge("latency_sum", "", {}), std::invalid_argument);
  EXPECT_THROW(metrics.gauge("latency_bucket", "", {}), std::invalid_argument);
  metrics.gauge("size_sum", "", {});
  EXPECT_THROW(metrics.histogram("size", "", {}), std::invalid_argument);
  metrics.histogram("a_count", "", {});
  EXPECT_THROW(metrics.histogram("a", "", {}), std::invalid_argument);  // a_count is a family
  EXPECT_NO_THROW(metrics.counter("latency_total", "", {}));
}

TEST(Metrics, CountersOnlyGoUp) {
  MetricsRegistry metrics;
  Counter& c = metrics.counter("c", "", {}).with({});
  c.inc(0);
  c.inc(0.5);
  EXPECT_THROW(c.inc(-1), std::invalid_argument);
  EXPECT_THROW(c.inc(kNaN), std::invalid_argument);
  EXPECT_EQ(c.value(), 0.5);
}

TEST(Metrics, GaugesGoUpAndDown) {
  MetricsRegistry metrics;
  Gauge& g = metrics.gauge("g", "", {}).with({});
  g.add(1);
  g.inc();
  g.dec();
  g.sub(3.5);
  EXPECT_EQ(g.value(), -2.5);
  g.set(3);
  EXPECT_EQ(metrics.value("g"), 3.0);
  g.set(-kInf);
  EXPECT_THAT(metrics.render(), HasSubstr("g -Inf\n"));
}

TEST(Metrics, WithAcceptsAVectorAndReturnsTheSameSeries) {
  MetricsRegistry metrics;
  CounterFamily& c = metrics.counter("c", "", {"a", "b"});
  std::vector<std::string> labels{"x", "y"};
  EXPECT_EQ(&c.with(labels), &c.with({"x", "y"}));
  EXPECT_NE(&c.with({"x", "z"}), &c.with({"x", "y"}));
  c.with(labels).inc(2);
  EXPECT_EQ(metrics.value("c", labels), 2.0);
  EXPECT_EQ(metrics.value("c", {"x", "y"}), 2.0);
}

TEST(Metrics, CachedReferencesStayValidAsSeriesAreAdded) {
  MetricsRegistry metrics;
  CounterFamily& family = metrics.counter("c", "", {"i"});
  Counter& first = family.with({"first"});
  for (int i = 0; i < 1000; ++i) family.with({std::to_string(i)}).inc();
  for (int i = 0; i < 50; ++i) metrics.gauge("g" + std::to_string(i), "", {});
  first.inc(7);
  EXPECT_EQ(metrics.value("c", {"first"}), 7.0);
  EXPECT_EQ(&family.with({"first"}), &first);
}

TEST(Metrics, GaugeCallbackIsEvaluatedAtEachScrape) {
  MetricsRegistry metrics;
  std::atomic<int> state{0};
  metrics.gauge_callback("mend_circuit_state", "0 closed, 1 half-open, 2 open.", {"agent"}, [&] {
    return std::vector<Sample>{{{"reviewer"}, static_cast<double>(state.load())}};
  });
  EXPECT_THAT(metrics.render(), HasSubstr("mend_circuit_state{agent=\"reviewer\"} 0\n"));
  state = 2;
  EXPECT_THAT(metrics.render(), HasSubstr("mend_circuit_state{agent=\"reviewer\"} 2\n"));
  EXPECT_EQ(metrics.value("mend_circuit_state", {"reviewer"}), 2.0);
  EXPECT_EQ(metrics.value("mend_circuit_state", {"builder"}), std::nullopt);

  metrics.counter_callback("mend_restarts_total", "", {}, [] {
    return std::vector<Sample>{{{}, 4.0}};
  });
  EXPECT_THAT(metrics.render(), HasSubstr("# TYPE mend_restarts_total counter\n"
                                          "mend_restarts_total 4\n"));
  EXPECT_EQ(metrics.value("mend_restarts_total"), 4.0);
}

TEST(Metrics, BadCallbackSamplesAreDroppedWithoutFailingTheScrape) {
  MetricsRegistry metrics;
  metrics.gauge_callback("g", "", {"agent"}, [] {
    return std::vector<Sample>{
        {{"b"}, 1.0}, {{}, 9.0}, {{"a", "extra"}, 9.0}, {{"a"}, 2.0}, {{"b"}, 3.0}};
  });
  metrics.gauge_callback("throws", "", {}, []() -> std::vector<Sample> {
    throw std::runtime_error("store\nunavailable");
  });
  metrics.counter("z", "", {}).with({}).inc();
  EXPECT_EQ(metrics.render(),
            "# TYPE g gauge\n"
            "g{agent=\"a\"} 2\n"
            "g{agent=\"b\"} 1\n"
            "# mend: g: dropped 2 sample(s) without exactly 1 label value(s)\n"
            "# mend: g: dropped 1 sample(s) with a repeated label set\n"
            "# TYPE throws gauge\n"
            "# mend: throws: callback failed: store unavailable\n"
            "# TYPE z counter\n"
            "z 1\n");
  EXPECT_EQ(metrics.value("throws"), std::nullopt);
  EXPECT_EQ(metrics.value("g", {"b"}), 1.0);
}

TEST(Metrics, CallbacksMayUseTheRegistry) {
  MetricsRegistry metrics;
  Counter& done = metrics.counter("done_total", "", {}).with({});
  done.inc(3);
  // A derived value computed from another metric: runs without the registry's lock.
  metrics.gauge_callback("done_doubled", "", {}, [&] {
    return std::vector<Sample>{{{}, 2 * metrics.value("done_total").value_or(0)}};
  });
  EXPECT_THAT(metrics.render(), HasSubstr("done_doubled 6\n"));
}

TEST(Metrics, ValueNeverCreatesSeries) {
  MetricsRegistry metrics;
  CounterFamily& c = metrics.counter("c", "", {"a"});
  metrics.histogram("h", "", {"a"});
  EXPECT_EQ(metrics.value("c", {"x"}), std::nullopt);
  EXPECT_EQ(metrics.value("h_count", {"x"}), std::nullopt);
  EXPECT_EQ(metrics.value("c"), std::nullopt);              // wrong label count
  EXPECT_EQ(metrics.value("c", {"x", "y"}), std::nullopt);  // wrong label count
  EXPECT_EQ(metrics.value("missing"), std::nullopt);
  EXPECT_EQ(metrics.value("h", {"x"}), std::nullopt);  // a histogram has no sample "h"
  EXPECT_EQ(metrics.render(), "# TYPE c counter\n# TYPE h histogram\n");
  c.with({"x"});
  EXPECT_EQ(metrics.value("c", {"x"}), 0.0);
}

TEST(Metrics, ConcurrentIncrementsAndRendersLoseNothing) {
  MetricsRegistry metrics;
  CounterFamily& tasks = metrics.counter("mend_tasks_total", "", {"outcome"});
  HistogramFamily& latency = metrics.histogram("latency", "", {"outcome"}, {0.5, 1});
  GaugeFamily& in_flight = metrics.gauge("in_flight", "", {});
  constexpr int kThreads = 4;
  constexpr int kIncrements = 10000;
  std::atomic<bool> done{false};
  std::atomic<int> renders{0};
  std::thread scraper([&] {
    while (!done.load()) {
      const std::string text = metrics.render();
      EXPECT_THAT(text, HasSubstr("# TYPE mend_tasks_total counter\n"));
      renders.fetch_add(1);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kIncrements; ++i) {
        in_flight.with({}).inc();
        tasks.with({"succeeded"}).inc();
        latency.with({"succeeded"}).observe(i % 2 == 0 ? 0.25 : 0.75);
        // New series appear while others are read and rendered.
        if (i % 1000 == 0) tasks.with({"t" + std::to_string(t) + "_" + std::to_string(i)}).inc();
        in_flight.with({}).dec();
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  done = true;
  scraper.join();
  EXPECT_GT(renders.load(), 0);
  EXPECT_EQ(metrics.value("mend_tasks_total", {"succeeded"}), kThreads * kIncrements);
  EXPECT_EQ(metrics.value("latency_count", {"succeeded"}), kThreads * kIncrements);
  EXPECT_EQ(metrics.value("latency_sum", {"succeeded"}), kThreads * kIncrements / 2 * 1.0);
  EXPECT_EQ(metrics.value("in_flight"), 0.0);
  EXPECT_EQ(metrics.value("mend_tasks_total", {"t3_9000"}), 1.0);
  const std::string text = metrics.render();
  EXPECT_THAT(text, HasSubstr("mend_tasks_total{outcome=\"succeeded\"} 40000\n"));
  EXPECT_THAT(text, HasSubstr("latency_bucket{outcome=\"succeeded\",le=\"0.5\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("latency_bucket{outcome=\"succeeded\",le=\"+Inf\"} 40000\n"));
  EXPECT_THAT(text, Not(HasSubstr("NaN")));
}

TEST(Metrics, ConcurrentRegistrationOfOneNameYieldsOneFamily) {
  MetricsRegistry metrics;
  std::vector<CounterFamily*> seen(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      seen[static_cast<std::size_t>(t)] = &metrics.counter("c_total", "", {"a"});
      seen[static_cast<std::size_t>(t)]->with({"x"}).inc();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (CounterFamily* family : seen) EXPECT_EQ(family, seen[0]);
  EXPECT_EQ(metrics.value("c_total", {"x"}), 4.0);
}

}  // namespace
}  // namespace mend
