#include "mend/runtime/async_workflow.h"

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mend {
namespace {

namespace net = boost::asio;

// One task in progress. Whoever holds the unique_ptr to it holds the task: the coroutine that
// carries out its steps, the pending timer's handler, or a job on the blocking executor. Nothing
// else refers to it, so a handler destroyed unrun (the io_context went away) destroys the task.
//
// The steps run in a coroutine while they can (agent calls are awaited in it, as the daemon's
// HTTP calls must be), and the coroutine ends whenever the task has to wait: a backoff timer
// or a job on the blocking executor. The wait's handler starts a new coroutine. So a task that
// waits holds no coroutine frame, only this object and its timer (a few hundred bytes each
// instead of several KB, with 100,000 tasks in backoff during an outage), and a task that
// never waits costs one coroutine, as before.
class Driver {
 public:
  Driver(const Workflow& workflow, Task task, AsyncAgentInvoker& invoker,
         AgentOperations* operations, net::any_io_executor io, net::any_io_executor blocking,
         std::unique_ptr<detail::WorkflowCompletion> completion)
      : workflow_(workflow),
        run_(workflow.start(std::move(task), operations != nullptr)),
        invoker_(invoker),
        operations_(operations),
        blocking_(std::move(blocking)),
        timer_(std::move(io)),
        completion_(std::move(completion)) {}

  // Goes on with the run in a new coroutine on the run's I/O executor. What escapes the
  // coroutine (the completion handler threw) is rethrown out of the executor's run(), as any
  // handler's exception is.
  static void resume(std::unique_ptr<Driver> self) {
    net::any_io_executor io = self->io();
    net::co_spawn(io, drive(std::move(self)), [](std::exception_ptr error) {
      if (error) std::rethrow_exception(error);
    });
  }

 private:
  net::any_io_executor io() { return timer_.get_executor(); }
  // Completes the run, once. The run is destroyed first, as it was when the driver was one
  // coroutine: whatever it still holds (a retry token, after an exception) is given back before
  // the handler may let go of the workflow.
  void finish(std::exception_ptr error, Outcome outcome) {
    std::unique_ptr<detail::WorkflowCompletion> completion = std::move(completion_);
    if (completion == nullptr) return;
    run_.reset();
    completion->complete(io(), error, std::move(outcome));
  }
  // Carries out steps until the run waits or is done; the wait's handler takes `self` along.
  static net::awaitable<void> drive(std::unique_ptr<Driver> self);
  // A hedged call step (below): its first call and its hedging delay's timer; the race takes
  // `self` along.
  struct Race;
  using CallSlot = WorkflowRun::CallSlot;
  static void start_race(std::unique_ptr<Driver>& self, const WorkflowStep& step);
  static void launch(const std::shared_ptr<Race>& race, CallSlot slot, int replica);
  static void on_result(const std::shared_ptr<Race>& race, CallSlot slot,
                        Result<std::string> result);
  static void on_timer(const std::shared_ptr<Race>& race);
  // Runs `fn(driver)` on the blocking executor, then resumes the run on its I/O executor. An
  // exception of `fn` ends the run with it.
  template <class Fn>
  static void offload(std::unique_ptr<Driver> self, Fn fn);

  const Workflow& workflow_;
  std::unique_ptr<WorkflowRun> run_;
  AsyncAgentInvoker& invoker_;
  AgentOperations* const operations_;
  net::any_io_executor blocking_;
  net::steady_timer timer_;  // backoff waits; its executor is the run's I/O executor
  std::unique_ptr<detail::WorkflowCompletion> completion_;
};

net::awaitable<void> Driver::drive(std::unique_ptr<Driver> self) {
  try {
    for (;;) {
      const WorkflowStep* step = nullptr;
      try {
        step = &self->run_->next();
      } catch (...) {
        self->finish(std::current_exception(), Outcome{});
        co_return;
      }
      switch (step->kind) {
        case WorkflowStep::Kind::call: {
          if (step->hedge_after) {
            start_race(self, *step);  // takes `self` once nothing can throw
            co_return;
          }
          std::optional<Result<std::string>> result;
          try {
            // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
            // step->task: the task with this call's time limit (mend/core/attempt_policy.h).
            auto invoked = self->invoker_.invoke_async(*step->agent, step->replica, *step->task,
                                                       step->attempt);
            result.emplace(co_await std::move(invoked));
          } catch (const std::exception& e) {
            // As the synchronous driver: an invoker that throws fails its call, not the run.
            result.emplace(Error::from_live_exception(e, std::current_exception()));
          } catch (...) {
            result.emplace(Error::from_exception(std::current_exception()));
          }
          self->run_->provide_call_result(std::move(*result));
          break;
        }
        case WorkflowStep::Kind::wait: {
          Driver* driver = self.get();
          driver->timer_.expires_after(step->delay);
          // Nothing cancels the timer but the run's destruction, which takes the handler along
          // unrun.
          driver->timer_.async_wait(
              [self = std::move(self)](const boost::system::error_code&) mutable {
                resume(std::move(self));
              });
          co_return;
        }
        case WorkflowStep::Kind::heal:
          // start() enabled healing only with both a healer and operations. heal() turns failures
          // of the operations and strategies into its report. The step's symptoms live in the
          // run, which travels with the job.
          offload(std::move(self),
                  [agent = step->agent->name, symptoms = step->symptoms](Driver& d) {
                    const Workflow& workflow = d.workflow_;
                    d.run_->provide_healing(workflow.options().healer->heal(
                        agent, *symptoms, *d.operations_, workflow.env().clock->now()));
                  });
          co_return;
        case WorkflowStep::Kind::escalate:
          offload(std::move(self), [request = step->escalation](Driver& d) {
            EscalationSink* sink = d.workflow_.options().escalations;
            d.run_->provide_escalation(detail::guarded([&] { return sink->escalate(*request); }));
          });
          co_return;
        case WorkflowStep::Kind::done: {
          Outcome outcome = self->run_->take_outcome();
          TaskJournal* journal = self->workflow_.options().journal;
          if (journal == nullptr || journal->try_record(self->run_->task(), outcome)) {
            self->finish(nullptr, std::move(outcome));
            co_return;
          }
          // The journal could not queue it: a store write, off the I/O threads; then back to the
          // I/O executor to complete (see offload()).
          net::any_io_executor blocking = self->blocking_;
          net::any_io_executor work =
              net::prefer(self->io(), net::execution::outstanding_work.tracked);
          net::post(blocking, [self = std::move(self), outcome = std::move(outcome),
                               work = std::move(work)]() mutable {
            self->workflow_.options().journal->record(self->run_->task(), outcome);  // noexcept
            net::any_io_executor io = self->io();
            net::post(io, [self = std::move(self), outcome = std::move(outcome),
                           work = std::move(work)]() mutable {
              self->finish(nullptr, std::move(outcome));
            });
          });
          co_return;
        }
      }
    }
  } catch (...) {
    // The driver itself failed (out of memory, say) while it held the run: end the run with the
    // exception. Anything else (the completion handler threw) goes to the executor's run().
    if (self == nullptr || self->completion_ == nullptr) throw;
    self->finish(std::current_exception(), Outcome{});
  }
}

// --- Hedged calls (WorkflowStep::hedge_after; mend/core/hedging.h) ----------------------------
//
// The call is not awaited inline: the first call and (when the delay passes first) the hedge are
// spawned, each with a CallCancel, and complete into a Race, which holds the driver meanwhile.
// The first result that decides the step (an answer, or a failure when the other call is not out)
// resumes the driver, as a wait's timer does, and cancels the other call; a failure while the
// other call is out is handed to the run (provide_early_failure) and the other is waited for. A
// call that ends after the step was decided finds no driver: it touches the race only (the driver
// may be gone by then). Everything of a race runs on its own strand: the I/O executor may be run
// by many threads.
struct Driver::Race {
  Race(net::any_io_executor s, AsyncAgentInvoker& i, const WorkflowStep& step)
      : strand(std::move(s)),
        timer(strand),
        invoker(i),
        agent(*step.agent),
        task(*step.task),
        hedge_task(hedged(*step.task, *step.hedge_after)),
        attempt(step.attempt) {}
  // The hedge's task: its time limit is what is left of the first call's when it goes (`delay`
  // after it), so that the step never outlasts the first call's limit, nor the task's deadline.
  static Task hedged(const Task& first, Duration delay) {
    Task t = first;
    if (t.attempt_timeout) {
      t.attempt_timeout =
          std::max(*t.attempt_timeout - delay, Duration(std::chrono::milliseconds(1)));
    }
    return t;
  }
  net::any_io_executor strand;
  net::steady_timer timer;  // the hedging delay
  AsyncAgentInvoker& invoker;
  // Copies: a lost call may end after the run, and the registry it pointed into, are gone.
  const AgentInfo agent;
  const Task task;
  const Task hedge_task;
  const int attempt;
  std::unique_ptr<Driver> driver;  // until the step is decided
  std::array<std::shared_ptr<CallCancel>, 2> cancels;
  std::array<bool, 2> out{};  // the call of that slot was started and has not ended
};

void Driver::start_race(std::unique_ptr<Driver>& self, const WorkflowStep& step) {
  auto race = std::make_shared<Race>(net::make_strand(self->io()), self->invoker_, step);
  const int replica = step.replica;
  const Duration delay = *step.hedge_after;
  race->driver = std::move(self);
  net::post(race->strand, [race, replica, delay] {
    launch(race, CallSlot::first, replica);
    race->timer.expires_after(delay);
    race->timer.async_wait([race](const boost::system::error_code& ec) {
      if (!ec) on_timer(race);
    });
  });
}

void Driver::launch(const std::shared_ptr<Race>& race, CallSlot slot, int replica) {
  const auto i = static_cast<std::size_t>(slot);
  auto cancel = std::make_shared<CallCancel>();
  race->cancels[i] = cancel;
  race->out[i] = true;
  net::co_spawn(
      race->strand,
      [race, slot, replica, cancel]() -> net::awaitable<void> {
        std::optional<Result<std::string>> result;
        try {
          // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
          auto invoked = race->invoker.invoke_async(
              race->agent, replica, slot == CallSlot::hedge ? race->hedge_task : race->task,
              race->attempt, cancel);
          result.emplace(co_await std::move(invoked));
        } catch (const std::exception& e) {
          result.emplace(Error::from_live_exception(e, std::current_exception()));
        } catch (...) {
          result.emplace(Error::from_exception(std::current_exception()));
        }
        on_result(race, slot, std::move(*result));
      },
      [](std::exception_ptr error) {
        if (error) std::rethrow_exception(error);
      });
}

void Driver::on_result(const std::shared_ptr<Race>& race, CallSlot slot,
                       Result<std::string> result) {
  const auto i = static_cast<std::size_t>(slot);
  const std::size_t other = 1 - i;
  race->out[i] = false;
  if (race->driver == nullptr) return;  // decided already: this call lost, and was cancelled
  if (!result.ok() && race->out[other]) {
    race->driver->run_->provide_early_failure(slot, std::move(result).error());
    return;
  }
  // Out of the race first: a cancel hook that completes the other call at once finds it decided.
  std::unique_ptr<Driver> driver = std::move(race->driver);
  race->timer.cancel();
  driver->run_->provide_call_result(std::move(result), slot);
  if (race->out[other]) race->cancels[other]->cancel();
  resume(std::move(driver));
}

void Driver::on_timer(const std::shared_ptr<Race>& race) {
  if (race->driver == nullptr || race->out[1]) return;
  const int replica = race->driver->run_->start_hedge();
  if (replica >= 0) launch(race, CallSlot::hedge, replica);
}

template <class Fn>
void Driver::offload(std::unique_ptr<Driver> self, Fn fn) {
  net::any_io_executor blocking = self->blocking_;
  // Tracked: the I/O executor's run() must not return while the run is away on `blocking`. It
  // travels back with the run and is released on the I/O thread: released on the blocking
  // thread, it could touch an io_context that its owner destroyed once the run completed.
  net::any_io_executor work = net::prefer(self->io(), net::execution::outstanding_work.tracked);
  net::post(blocking,
            [self = std::move(self), fn = std::move(fn), work = std::move(work)]() mutable {
              std::exception_ptr error;
              try {
                fn(*self);
              } catch (...) {
                error = std::current_exception();
              }
              net::any_io_executor io = self->io();
              net::post(io, [self = std::move(self), error, work = std::move(work)]() mutable {
                if (error) {
                  self->finish(error, Outcome{});
                } else {
                  resume(std::move(self));
                }
              });
            });
}

}  // namespace

namespace detail {

void start_workflow(const Workflow& workflow, Task task, AsyncAgentInvoker& invoker,
                    AgentOperations* operations, boost::asio::any_io_executor io,
                    boost::asio::any_io_executor blocking,
                    std::unique_ptr<WorkflowCompletion> completion) {
  Driver::resume(std::make_unique<Driver>(workflow, std::move(task), invoker, operations,
                                          std::move(io), std::move(blocking),
                                          std::move(completion)));
}

}  // namespace detail

boost::asio::awaitable<Outcome> run_workflow_async(const Workflow& workflow, Task task,
                                                   AsyncAgentInvoker& invoker,
                                                   AgentOperations* operations,
                                                   boost::asio::any_io_executor blocking) {
  auto io = co_await boost::asio::this_coro::executor;
  // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
  auto run = async_run_workflow(workflow, std::move(task), invoker, operations, std::move(io),
                                std::move(blocking), boost::asio::use_awaitable);
  Outcome outcome = co_await std::move(run);
  co_return outcome;
}

}  // namespace mend
