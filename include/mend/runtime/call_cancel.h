// File: mend/runtime/call_cancel.h
//
// A handle that stops one call in flight: the caller keeps it, the call registers how it is
// stopped (a hook), and cancel() runs that hook. The async workflow driver hands one to each call
// of a hedged step (mend/runtime/async_workflow.h) and cancels the call that lost; HttpClient's
// request() closes the call's connection when its handle is cancelled (mend/runtime/http_client.h).
//
//   auto cancel = std::make_shared<mend::CallCancel>();
//   auto call = client.request("POST", url, headers, body, timeout, cancel);
//   // ... elsewhere, any thread:
//   cancel->cancel();  // the request ends promptly with an error of kind "cancelled"
//
// Implementing a cancellable call: set_hook() before the call waits (false: it was cancelled
// already, so fail at once), and clear_hook() once the call is over (false: it was cancelled
// meanwhile; the hook may have run or be running). The hook must be quick and must not throw: it
// runs on the thread that calls cancel(), typically posting the real work (closing a socket) to
// the call's own executor. A call that registers no hook is simply not stopped by cancel(), only
// told (cancelled()).
//
// Thread-safety: every method is safe from many threads at once (one mutex, never held while the
// hook runs). A handle serves one call at a time; cancel() is final.
#ifndef MEND_RUNTIME_CALL_CANCEL_H_
#define MEND_RUNTIME_CALL_CANCEL_H_

#include <functional>

#include "mend/core/thread_annotations.h"

namespace mend {

class CallCancel {
 public:
  CallCancel() = default;
  CallCancel(const CallCancel&) = delete;
  CallCancel& operator=(const CallCancel&) = delete;

  // Cancels the call: its hook, if one is set, runs now on this thread (once). Later calls do
  // nothing.
  void cancel() MEND_EXCLUDES(mu_);
  bool cancelled() const MEND_EXCLUDES(mu_);
  // Registers how to stop the call, replacing an earlier hook. False (and the hook is dropped,
  // not run) when the call was cancelled already.
  bool set_hook(std::function<void()> hook) MEND_EXCLUDES(mu_);
  // Drops the hook: the call is over. False when it was cancelled (its hook taken to run).
  bool clear_hook() MEND_EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  bool cancelled_ MEND_GUARDED_BY(mu_) = false;
  std::function<void()> hook_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_RUNTIME_CALL_CANCEL_H_
