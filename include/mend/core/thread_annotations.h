// File: mend/core/thread_annotations.h
//
// Lock annotations that clang checks at compile time (-Wthread-safety, clang's thread-safety
// analysis), and the annotated mutex and lock mend's classes use. The macros follow Clang's
// documentation ("Thread Safety Analysis"), prefixed MEND_; on other compilers they expand to
// nothing and the wrappers are plain std::mutex and std::unique_lock.
//
//   class Counter {
//    public:
//     void add() MEND_EXCLUDES(mu_) {
//       mend::MutexLock lock(mu_);
//       ++count_;
//     }
//     void wait_for_one() {
//       mend::MutexLock lock(mu_);
//       // A predicate that reads guarded members says it runs under the lock.
//       ready_.wait(lock.native(), [&]() MEND_REQUIRES(mu_) { return count_ > 0; });
//     }
//    private:
//     void reset() MEND_REQUIRES(mu_) { count_ = 0; }  // a helper called with mu_ held
//     mend::Mutex mu_;
//     std::condition_variable ready_;
//     int count_ MEND_GUARDED_BY(mu_) = 0;
//   };
//
// MutexLock holds the mutex from construction to destruction, like std::lock_guard, and can be
// unlocked and locked again in between, like std::unique_lock: the analysis follows both. For a
// condition variable, native() lends the std::unique_lock inside; the wait unlocks and relocks
// it, and the lock holds the mutex again when the wait returns. Lock and unlock through the
// MutexLock, not through native(), or the analysis cannot see it. A helper that MEND_REQUIRES
// the mutex and calls out releases it for a scope with MutexUnlock. `make lint` runs the
// analysis over src/ (docs/development.md).
//
// Thread-safety: Mutex is a mutex (std::mutex). A MutexLock or MutexUnlock belongs to the thread
// that made it, like std::unique_lock. The macros are declarations only.
#ifndef MEND_CORE_THREAD_ANNOTATIONS_H_
#define MEND_CORE_THREAD_ANNOTATIONS_H_

#include <mutex>

#if defined(__clang__)
#define MEND_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define MEND_THREAD_ANNOTATION_(x)
#endif

// A class that is a lock (mend::Mutex); `x` names its kind in the warnings, e.g. "mutex".
#define MEND_CAPABILITY(x) MEND_THREAD_ANNOTATION_(capability(x))
// A class that holds a lock for its lifetime (mend::MutexLock).
#define MEND_SCOPED_CAPABILITY MEND_THREAD_ANNOTATION_(scoped_lockable)
// A member read and written only with the lock held.
#define MEND_GUARDED_BY(x) MEND_THREAD_ANNOTATION_(guarded_by(x))
// A pointer (or smart pointer) whose pointee is read and written only with the lock held.
#define MEND_PT_GUARDED_BY(x) MEND_THREAD_ANNOTATION_(pt_guarded_by(x))
// A function called with the locks held; it returns with them still held.
#define MEND_REQUIRES(...) MEND_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
// A function that takes the locks (none named: the object's own, for a mutex's methods).
#define MEND_ACQUIRE(...) MEND_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
// A function that releases the locks.
#define MEND_RELEASE(...) MEND_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
// A function that takes the lock when it returns `x` (try_lock: true).
#define MEND_TRY_ACQUIRE(...) MEND_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
// A function called without the locks held (it takes them itself, or calls out).
#define MEND_EXCLUDES(...) MEND_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
// A function that returns a reference to the lock `x`.
#define MEND_RETURN_CAPABILITY(x) MEND_THREAD_ANNOTATION_(lock_returned(x))
// Turns the analysis off for one function: for what it cannot follow, with a comment saying why.
#define MEND_NO_THREAD_SAFETY_ANALYSIS MEND_THREAD_ANNOTATION_(no_thread_safety_analysis)

namespace mend {

// std::mutex, annotated as a lock.
class MEND_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() MEND_ACQUIRE() { mu_.lock(); }
  void unlock() MEND_RELEASE() { mu_.unlock(); }
  bool try_lock() MEND_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// std::unique_lock<std::mutex> over a mend::Mutex, annotated: holds the mutex from construction,
// and releases it at destruction unless unlock() released it already.
class MEND_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) MEND_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() MEND_RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Releases the mutex before the end of the scope (e.g. to call out), and takes it again.
  void unlock() MEND_RELEASE() { lock_.unlock(); }
  void lock() MEND_ACQUIRE() { lock_.lock(); }

  // The lock for a std::condition_variable's wait, which must hold the mutex again when it
  // returns. Only for that: lock and unlock through the MutexLock.
  std::unique_lock<std::mutex>& native() noexcept { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// The reverse: releases a held Mutex for a scope (e.g. to call out from a function that
// MEND_REQUIRES it) and takes it again at the end of the scope, also when an exception leaves it.
class MEND_SCOPED_CAPABILITY MutexUnlock {
 public:
  explicit MutexUnlock(Mutex& mu) MEND_RELEASE(mu) : mu_(mu) { mu_.unlock(); }
  // Takes the mutex again (the analysis models a scope's end as undoing what it began with).
  ~MutexUnlock() MEND_RELEASE() { mu_.lock(); }
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace mend

#endif  // MEND_CORE_THREAD_ANNOTATIONS_H_
