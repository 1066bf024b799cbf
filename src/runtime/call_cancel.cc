#include "mend/runtime/call_cancel.h"

#include <utility>

namespace mend {

void CallCancel::cancel() {
  std::function<void()> hook;
  {
    MutexLock lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    hook = std::move(hook_);
    hook_ = nullptr;
  }
  if (hook) hook();
}

bool CallCancel::cancelled() const {
  MutexLock lock(mu_);
  return cancelled_;
}

bool CallCancel::set_hook(std::function<void()> hook) {
  MutexLock lock(mu_);
  if (cancelled_) return false;
  hook_ = std::move(hook);
  return true;
}

bool CallCancel::clear_hook() {
  std::function<void()> dropped;  // destroyed after the lock is released
  MutexLock lock(mu_);
  dropped = std::move(hook_);
  hook_ = nullptr;
  return !cancelled_;
}

}  // namespace mend
